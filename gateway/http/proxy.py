"""Proxying one request to an HTTP upstream: peer choice, retries, relay both ways.

Retry rules mirror nginx's proxy_next_upstream: only before any response byte
reached the client, only for the configured conditions, never for a sent
non-idempotent request unless ``non_idempotent``, never once a streamed body
can no longer be replayed.  A failure on a reused keep-alive connection before
any response byte is retried once on a fresh connection without spending a try.
"""

from __future__ import annotations

import asyncio
from functools import partial

from gateway.observe.errorlog import log
from gateway.errors import HttpError, UpstreamError
from gateway.http import limit_rate, parser, request_body, response_heads, trailers
from gateway.http.headers import NEVER_PASSED, has_redirect_field, keep_challenge
from gateway.http.plan import HIDDEN_RESPONSE, NON_IDEMPOTENT, UPSTREAM_STATUS_CONDITIONS
from gateway.http.rewrite import referrer_context as _referrer
from gateway.http.tunnel import start_tunnel
from gateway.http.upstream_connection import UpstreamConnection

# Request bodies up to this size are kept so that a retry can send them again.
REPLAY_LIMIT = 1024 * 1024
# Body bytes held while no upstream connection is ready before client reading pauses.
PENDING_LIMIT = 256 * 1024
# nginx's proxy_buffer_size is 4k/8k; we accept larger heads but not without bound.
MAX_RESPONSE_HEAD = 64 * 1024

# Exchange states.
CONNECTING, WAITING, RELAYING, DONE = range(4)


def os_error_text(exc) -> str:
    """``111: Connection refused`` as nginx prints a failed call's errno, else the text."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{exc.errno}: {exc.strerror}"
    return str(exc)


def connect_error_text(exc, tls) -> str:
    """nginx's words for a failed connect to a peer, or a failed TLS handshake with it."""
    detail = None
    if tls is not None:
        from gateway.http.tls import upstream_handshake_error   # only https:// upstreams
        detail = upstream_handshake_error(exc)
    return detail or f"connect() failed ({os_error_text(exc)}) while connecting to upstream"


class ProxyExchange:
    """One client request on its way to an upstream and back."""

    __slots__ = (
        "conn", "request", "plan", "proxy", "loop", "app", "peers", "next_peer", "peer",
        "upstream", "state", "head", "body_parts", "body_size", "body_complete",
        "replayable", "request_sent", "tries", "started", "try_started", "deadline",
        "deadline_kind", "response_buffer", "framing", "remaining", "decoder",
        "wrap_chunks", "reusable", "client_paused", "upstream_paused", "connect_future",
        "header_time", "addresses", "statuses", "times", "try_bytes", "try_times", "buffer_body",
        "fresh_retry_done", "hidden", "own_server", "own_date", "trailing", "raw_headers",
        "waiting",
    )

    def __init__(self, conn, request, plan, app):
        self.conn = conn
        self.request = request
        self.plan = plan
        self.proxy = proxy = plan.proxy
        self.app = app
        self.loop = app.loop
        request.proxy_host = proxy.proxy_host
        key = proxy.key_template.render(request) if proxy.key_template is not None else None
        self.peers = proxy.upstream.balancer.select(key)
        self.next_peer = None
        self.peer = None
        self.upstream = None
        self.waiting = False     # for a connection from the pool (KeepalivePool.wait)
        self.state = CONNECTING
        self.body_parts = []
        self.body_size = 0
        self.body_complete = not conn.body_pending()
        # Chunked bodies are read whole and sent with a Content-Length, as nginx does.
        self.buffer_body = conn.body is not None and (conn.body.kind == "chunked"
                                                      or proxy.waits_body)
        self.replayable = True
        self.request_sent = False
        self.tries = 0
        self.started = app.clock()
        self.try_started = self.started
        self.deadline = 0.0
        self.deadline_kind = ""
        self.response_buffer = b""
        self.framing = "none"
        self.remaining = 0
        self.decoder = None
        self.wrap_chunks = False
        self.reusable = False
        self.client_paused = False
        self.upstream_paused = False
        self.connect_future = None
        self.header_time = 0.0
        self.addresses = []
        self.statuses = []
        self.times = []
        # Each try's [bytes received, bytes sent, bytes of the response head or None before
        # its body] ($upstream_bytes_received, _sent, $upstream_response_length).
        self.try_bytes = []
        # Each try's [connect time, header time], None until reached ($upstream_connect_time,
        # $upstream_header_time).
        self.try_times = []
        self.fresh_retry_done = False
        self.hidden = HIDDEN_RESPONSE
        self.own_server = self.own_date = True
        self.trailing = 0           # add_trailer: the status whose trailers end the body, or 0
        self.raw_headers = None     # the upstream's fields when a ResponseFilter edited them
        self.head = self._build_head()

    def start(self):
        if self.buffer_body and not self.body_complete:
            return   # client_body_end() starts the first try
        self._try_next_peer()

    # Building the upstream request ---------------------------------------

    def _build_head(self) -> bytes:
        request = self.request
        proxy = self.proxy
        target = proxy.upstream_uri(request)
        method = request.method if proxy.method is None else proxy.method.render(request)
        parts = [b"%s %s %s\r\n" % (method.encode("latin-1"),
                                      target.encode("utf-8", "surrogateescape"), proxy.http_version)]
        for name, template in proxy.set_headers:
            value = template.render(request)
            if value:
                parts.append(b"%s: %s\r\n" % (name, value.encode("latin-1", "replace")))
        dropped = proxy.dropped
        for lower, name, value in request.headers if proxy.pass_headers else ():
            if lower not in dropped:
                parts.append(b"%s: %s\r\n" % (name, value))
        return b"".join(parts)

    def _head_with_length(self) -> bytes:
        if self.proxy.set_body is not None:
            # proxy_set_body: this text is the body, whatever the client sent (not relayed).
            body = self.proxy.set_body.render(self.request).encode("latin-1", "replace")
            return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        body = self.conn.body
        if body is None or not self.proxy.pass_body:
            return self.head + b"\r\n"
        length = self.body_size if self.buffer_body else body.remaining + body.received
        return self.head + b"Content-Length: %d\r\n\r\n" % length

    # Choosing and reaching a peer ----------------------------------------

    def _take_peer(self):
        if self.next_peer is not None:
            peer, self.next_peer = self.next_peer, None
            return peer
        return next(self.peers, None)

    def _try_next_peer(self):
        peer = self._take_peer()
        if peer is None:
            self._give_up(502, "no live upstreams")
            return
        self.tries += 1
        self._connect(peer, allow_cached=True)

    def _connect(self, peer, allow_cached: bool):
        self.peer = peer
        self.try_started = self.app.clock()
        self.addresses.append(peer)
        self.try_bytes.append([0, 0, None])
        self.try_times.append([None, None])
        self._get_connection(peer, allow_cached, False)

    def _get_connection(self, peer, allow_cached: bool, waited: bool):
        """Take an idle connection to ``peer``, else open one, else wait for one (``waited``:
        the pool's turn after a wait, within the connect timeout armed when it began)."""
        upstream = self.proxy.upstream
        pool = upstream.pool
        keepalive = self.proxy.keepalive
        cached = pool.take(peer) if allow_cached and keepalive else None
        if cached is not None:
            # nginx: connect time 0 for a cached one (the wait, after a wait)
            self._attach(cached, self.app.clock() if waited else self.try_started)
            return
        self.state = CONNECTING
        if not waited:
            self._arm(self.proxy.connect_timeout, "connect")
        if keepalive and not pool.may_connect(peer):
            self.waiting = True
            pool.wait(peer, self)
            return
        pool.connect_started(peer)
        factory = lambda: UpstreamConnection(pool, peer)  # noqa: E731
        tls = self.proxy.tls
        if tls is None:
            connecting = self.loop.create_connection(factory, peer.host, peer.port)
        else:
            connecting = tls.connect(self.loop, factory, peer.host, peer.port, self.request)
        future = asyncio.ensure_future(connecting)
        self.connect_future = future
        future.add_done_callback(partial(pool.connect_done, peer))
        future.add_done_callback(self._connected)

    def connect_waited(self, peer):
        """The pool lets this waiting exchange open its connection now (or take one)."""
        self._get_connection(peer, True, True)

    def take_connection(self, upstream, now: float):
        """The pool hands this waiting exchange a connection another request gave back."""
        self._attach(upstream, now)

    def _connected(self, future):
        if future is not self.connect_future:
            if not future.cancelled() and future.exception() is None:
                future.result()[1].close()
            return
        self.connect_future = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._fail("error", 502, connect_error_text(exc, self.proxy.tls))
            return
        self._attach(future.result()[1])

    def _attach(self, upstream: UpstreamConnection, now: float | None = None):
        self.upstream = upstream
        self.try_times[-1][0] = (self.app.clock() if now is None else now) - self.try_started
        upstream.exchange = self
        upstream.requests += 1
        self.state = WAITING
        self.response_buffer = b""
        self.request_sent = True
        self._upstream_write(self._head_with_length())
        if self.proxy.pass_body:
            for part in self.body_parts:
                self._upstream_write(part)
        if not self.replayable:
            self.body_parts = []
        self._arm(self.proxy.read_timeout, "read")
        if self.client_paused and self.conn.transport is not None:
            self.client_paused = False
            self.conn.transport.resume_reading()

    # Events from the client ---------------------------------------------

    def client_body(self, pieces):
        streaming = self.upstream is not None and not self.buffer_body
        for piece in pieces:
            self.body_size += len(piece)
            if streaming:
                if self.proxy.pass_body:
                    self._upstream_write(piece)
                if self.replayable:
                    if self.body_size <= REPLAY_LIMIT:
                        self.body_parts.append(piece)
                    else:
                        self.replayable = False
                        self.body_parts = []
            else:
                # No connection yet (or a chunked body read whole): hold the bytes.
                self.body_parts.append(piece)
                if self.body_size > REPLAY_LIMIT and not self.buffer_body:
                    self.replayable = False
        if not streaming and not self.buffer_body and not self.client_paused \
                and sum(map(len, self.body_parts)) > PENDING_LIMIT:
            self.client_paused = True
            self.conn.transport.pause_reading()

    def client_body_end(self):
        self.body_complete = True
        if request_body.wanted():
            request_body.keep(self.request, self.body_parts, self.body_size)
            if self.proxy.waits_body:
                self.head = self._build_head()      # proxy_set_header ... $request_body
        if self.buffer_body and self.state == CONNECTING and self.upstream is None \
                and self.connect_future is None and self.tries == 0:
            self._try_next_peer()

    def client_aborted(self):
        """The client went away: drop the try and log the request as nginx's 499."""
        if self.state == DONE:
            return
        self.request.status = self.request.status or 499
        self.cancel()
        self._record()
        self.conn.finish_response()

    def cancel(self):
        """Stop without touching the client connection (it answers by itself)."""
        if self.state != DONE:
            self._finish_upstream(failed=False, reuse=False)
            self.state = DONE

    def client_write_paused(self):
        if self.upstream is not None and not self.upstream_paused:
            self.upstream_paused = True
            self.upstream.transport.pause_reading()

    def client_write_resumed(self):
        if self.upstream is not None and self.upstream_paused:
            self.upstream_paused = False
            self.upstream.transport.resume_reading()
        self._arm(self.proxy.read_timeout, "read")

    # Events from the upstream -------------------------------------------

    def upstream_write_paused(self):
        if not self.client_paused and self.conn.transport is not None:
            self.client_paused = True
            self.conn.transport.pause_reading()
        self._arm(self.proxy.send_timeout, "send")

    def upstream_write_resumed(self):
        if self.client_paused:
            self.client_paused = False
            self.conn.transport.resume_reading()
        self._arm(self.proxy.read_timeout, "read")

    def _upstream_write(self, data):
        self.try_bytes[-1][1] += len(data)
        self.upstream.transport.write(data)

    def upstream_data(self, data):
        self.try_bytes[-1][0] += len(data)
        if self.state == RELAYING:
            self._arm(self.proxy.read_timeout, "read")
            self._relay(data)
            return
        if self.state != WAITING:
            return
        self.response_buffer += data
        try:
            self._read_response_head()
        except (HttpError, UpstreamError) as exc:
            self._fail("invalid_header", 502, f"upstream sent invalid header: {exc}")

    def _read_response_head(self):
        while True:
            head = parser.parse_response_head(self.response_buffer, MAX_RESPONSE_HEAD)
            if head is None:
                return
            version, status, _reason, headers, consumed = head
            if response_heads.wanted():
                response_heads.record(self.request, response_heads.UPSTREAM,
                                      self.response_buffer[:consumed])
            rest = self.response_buffer[consumed:]
            self.response_buffer = b""
            if 100 <= status < 200 and status != 101:
                self.response_buffer = rest   # interim responses are not relayed
                continue
            self._start_response(version, status, headers, rest)
            return

    def _start_response(self, version, status, headers, rest):
        now = self.app.clock()
        self.header_time = self.try_times[-1][1] = now - self.try_started
        if status == 101:
            if self.request.header("upgrade") is not None:
                self._upgrade(headers, rest)
                return
            self.conn.keep_alive = False    # switched protocols, yet not asked to: no reuse
        condition = UPSTREAM_STATUS_CONDITIONS.get(status)
        if condition is not None and condition in self.proxy.next_upstream \
                and self._may_retry(condition):
            self.statuses.append(status)
            self.times.append(now - self.try_started)
            failed = status >= 500 or status == 429
            self._finish_upstream(failed=failed, reuse=False)
            peer, self.next_peer = self.next_peer, None
            self.tries += 1
            self._connect(peer, allow_cached=True)
            return
        self.statuses.append(status)
        intercept = self.proxy.intercept
        if intercept is not None and status in intercept:
            self._intercept(status, headers)
            return
        counts = self.try_bytes[-1]
        counts[2] = counts[0] - len(rest)
        edits = self.proxy.response_filter
        if edits is not None and (edits.always or has_redirect_field(headers)):
            self.raw_headers = headers
            headers, self.own_server, self.own_date = edits.apply(
                self.request, status, headers, self.app.absolute_url)
            self.hidden = NEVER_PASSED
        self._respond(version, status, headers, rest)

    def _intercept(self, status, headers):
        """proxy_intercept_errors: the location's error_page answers instead (nginx's
        ngx_http_upstream_intercept_errors); the upstream's body is not read."""
        self.times.append(self.app.clock() - self.try_started)
        self._finish_upstream(failed=False, reuse=False)
        self.state = DONE
        self._record()
        if status == 401:
            keep_challenge(self.request, headers)
        self.conn.send_error(status, self.plan.add_headers)

    def _respond(self, version, status, headers, rest):
        """Send the response head and start relaying its body (gzip.py adds a filter here)."""
        request = self.request
        kind, length = parser.response_body_framing(status, headers, request.method)
        upstream_close = version == 10 or status == 101     # nginx: no keep-alive after a 101
        lines = []
        hidden = self.hidden
        paced = self.proxy.paced
        for lower, name, value in headers:
            if lower in hidden:
                if lower == b"connection" and b"close" in value.lower():
                    upstream_close = True
                elif lower == b"x-accel-limit-rate":
                    paced = True
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        conn = self.conn
        self.pace(headers, paced)
        if kind == "chunked":
            if request.version == 11:
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                conn.keep_alive = False
            self.decoder = parser.ChunkedDecoder()
        elif kind == "close":
            if request.version == 11 and request.method != "HEAD":
                lines.append(b"Transfer-Encoding: chunked\r\n")
                self.wrap_chunks = True
            else:
                conn.keep_alive = False
            upstream_close = True
        self.framing = kind
        self.remaining = length
        self.reusable = not upstream_close and self.proxy.keepalive
        self.state = RELAYING
        if kind != "none" and self.proxy.trailers and \
                trailers.expected(self.plan.settings, request, status):
            # add_trailer: the body goes out in chunks of ours, then the trailers.
            self.trailing = status
            lines = [trailers.chunked_lines(self.conn, b"".join(lines))]
            self.wrap_chunks = True
        if kind == "length" and 0 < length <= len(rest):
            # The whole body came with the head: answer with a single write.
            if len(rest) > length:
                self.reusable = False
            self.remaining = 0
            body = rest if len(rest) == length else rest[:length]
            self._send_head(status, b"".join(lines),
                            trailers.chunk(body) if self.trailing else body)
            self._complete()
            return
        self._send_head(status, b"".join(lines))
        if kind == "none" or (kind == "length" and length == 0):
            self._complete()
        elif rest:
            self._relay(rest)

    def pace(self, headers, accel: bool) -> None:
        """Choose the response's limit_rate as nginx does, before its head goes out.

        ``accel``: the upstream sent X-Accel-Limit-Rate (or the location paces anyway).
        """
        raw = self.raw_headers
        if raw is not None:
            accel = accel or any(lower == b"x-accel-limit-rate" for lower, _, _ in raw)
        if accel or limit_rate.RATE in (getattr(self.request, "vars", None) or ()):
            limit_rate.start(self.conn, self.request, self.plan.settings,
                             raw if raw is not None else headers)

    def _send_head(self, status, lines, body=b""):
        if self.own_server and self.own_date:
            self.conn.send_head(status, lines, self.plan.add_headers, body)
        else:   # proxy_pass_header Server or Date, and the upstream sent it
            self.conn.send_head(status, lines, self.plan.add_headers, body,
                                (self.own_server, self.own_date))

    def _relay(self, data):
        kind = self.framing
        conn = self.conn
        if kind == "length":
            data, done = self._length_part(data)
            conn.send_body(trailers.chunk(data) if self.trailing else data)
            if done:
                self._complete()
        elif kind == "chunked":
            try:
                if self.trailing:
                    used, pieces = self.decoder.feed(data, True)
                    for piece in pieces or ():
                        conn.send_body(trailers.chunk(piece))
                elif self.request.version == 11:
                    used, _ = self.decoder.feed(data, False)
                    conn.send_body(data[:used] if used < len(data) else data)
                else:
                    used, pieces = self.decoder.feed(data, True)
                    for piece in pieces or ():
                        conn.send_body(piece)
            except HttpError:
                self._abort("upstream sent invalid chunked response")
                return
            if self.decoder.done:
                if used < len(data):
                    self.reusable = False
                self._complete()
        elif kind == "close":
            if self.wrap_chunks:
                conn.send_body(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                conn.send_body(data)

    def _length_part(self, data):
        """Of a Content-Length body: (the part of ``data`` that belongs to it, whether it ends)."""
        if len(data) < self.remaining:
            self.remaining -= len(data)
            return data, False
        if len(data) > self.remaining:
            self.reusable = False   # bytes after the body: do not trust the connection
            data = data[:self.remaining]
        self.remaining = 0
        return data, True

    def _upgrade(self, headers, rest):
        """101 to a request that asked for an upgrade: the connections become a tunnel."""
        self.statuses.append(101)
        self.state = RELAYING
        self.deadline = 0.0
        start_tunnel(self, headers, rest)

    def tunnelled(self, received: int, sent: int):
        """The tunnel's bytes from and to the upstream: the try's counts, not its response."""
        counts = self.try_bytes[-1]
        counts[0] += received
        counts[1] += sent
        if counts[2] is not None:
            counts[2] += received

    def tunnel_closed(self, detail):
        """The tunnel ended (tunnel.py): close the upstream connection, never pool it; log."""
        if self.state == DONE:
            return
        if detail:
            self._log_upstream_error(detail, self.peer, "info")    # nginx's level for these
        self.reusable = False
        self._complete()

    def upstream_eof(self):
        if self.state == RELAYING and self.framing == "close":
            if self.wrap_chunks and not self.trailing:
                self.conn.send_raw(b"0\r\n\r\n")
            self.reusable = False
            self._complete()
        elif self.state == RELAYING:
            self._abort("upstream prematurely closed connection while reading upstream")
        elif self.state == WAITING:
            self._fail("error", 502, "upstream prematurely closed connection while reading "
                       "response header from upstream")

    def upstream_lost(self, exc):
        if self.state == WAITING:
            detail = f"recv() failed ({exc})" if exc else "upstream prematurely closed connection"
            self._fail("error", 502, f"{detail} while reading response header from upstream")
        elif self.state == RELAYING:
            self._abort("upstream connection lost while reading upstream")

    # Outcomes -----------------------------------------------------------

    def _complete(self):
        if self.trailing:
            self.conn.send_raw(trailers.last_chunk(self.plan.settings, self.request,
                                                   self.trailing))
        self.times.append(self.app.clock() - self.try_started)
        self._finish_upstream(failed=False, reuse=self.reusable and self.body_complete)
        self.state = DONE
        if self.plan.records_upstream:
            self._record()
        self.conn.finish_response()

    def _finish_upstream(self, failed: bool, reuse: bool):
        """Report the try to the balancer and put the connection back or close it."""
        self.deadline = 0.0
        self.waiting = False
        if self.connect_future is not None:
            self.connect_future.cancel()
            self.connect_future = None
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if self.upstream_paused:
                self.upstream_paused = False
                upstream.transport.resume_reading()
            if reuse:
                self.proxy.upstream.pool.put(upstream, self.app.clock())
            else:
                upstream.close()
        if self.peer is not None:
            now = self.app.clock()
            self.proxy.upstream.balancer.release(
                self.peer, failed, self.header_time or None, now - self.try_started)
            self.peer = None

    def _may_retry(self, condition: str) -> bool:
        """Whether nginx's rules allow another try; fetches the next peer if so."""
        proxy = self.proxy
        if condition not in proxy.next_upstream or not self.replayable:
            return False
        if self.request_sent and self.request.method in NON_IDEMPOTENT \
                and "non_idempotent" not in proxy.next_upstream:
            return False
        if proxy.tries and self.tries >= proxy.tries:
            return False
        if proxy.next_upstream_timeout and \
                self.app.clock() - self.started >= proxy.next_upstream_timeout:
            return False
        if self.next_peer is None:
            self.next_peer = next(self.peers, None)
        return self.next_peer is not None

    def _fail(self, condition: str, status: int, detail: str):
        """A try failed before any response byte reached the client."""
        if self.state in (RELAYING, DONE):
            self._abort(detail)
            return
        upstream = self.upstream
        stale = (condition == "error" and upstream is not None and upstream.reused
                 and not self.fresh_retry_done and self.request.method not in NON_IDEMPOTENT)
        peer = self.peer
        self._log_upstream_error(detail, peer)
        if stale:
            # The peer closed an idle keep-alive connection: not the peer's fault, and
            # the balancer's choice (and its connection count) stays as it is.
            self.fresh_retry_done = True
            upstream.close()
            self.upstream = None
            self.addresses.pop()
            self.try_bytes.pop()
            self.try_times.pop()
            self._connect(peer, allow_cached=False)
            return
        self.statuses.append(status)
        self.times.append(self.app.clock() - self.try_started)
        self._finish_upstream(failed=True, reuse=False)
        if self._may_retry(condition):
            self.tries += 1
            peer, self.next_peer = self.next_peer, None
            self._connect(peer, allow_cached=True)
            return
        self._give_up(status, detail)

    def _give_up(self, status: int, detail: str):
        self.state = DONE
        if not self.addresses:
            log.error(f'*{self.request.connection_id} {detail} while connecting to upstream, '
                      f'client: {self.request.remote_addr}, '
                      f'request: "{self.request.method} {self.request.request_uri}"')
        self._record()
        self.conn.send_error(status, self.plan.add_headers)

    def _abort(self, detail: str):
        """The response already started: all we can do is cut the connection."""
        self._log_upstream_error(detail, self.peer)
        self._finish_upstream(failed=True, reuse=False)
        self.state = DONE
        self._record()
        self.conn.keep_alive = False
        self.conn.close()
        self.conn.finish_response()

    def _log_upstream_error(self, detail, peer, level="error"):
        request = self.request
        if not log.enabled(level):
            return
        where = f"{peer.host}:{peer.port}" if peer is not None else "-"
        getattr(log, level)(f'*{request.connection_id} {detail}, client: {request.remote_addr}, '
                            f'server: {request.server_name}, '
                            f'request: "{request.method} {request.request_uri} {request.protocol}", '
                            f'upstream: "{"https" if self.proxy.tls else "http"}://{where}'
                            f'{self.proxy.upstream_uri(request)}", '
                            f'host: "{request.host}"{_referrer(request)}')

    def _record(self):
        """Fill the $upstream_* variables (only needed by access logs)."""
        request = self.request
        if len(self.times) < len(self.addresses):   # cut short: nginx times the try at finalizing
            self.times.append(self.app.clock() - self.try_started)
        request.upstream_addr = ", ".join(f"{p.host}:{p.port}" for p in self.addresses)
        request.upstream_status = ", ".join(map(str, self.statuses))
        request.upstream_response_time = ", ".join(f"{t:.3f}" for t in self.times)
        request.upstream_connect_time = ", ".join(_time_or_dash(c) for c, h in self.try_times)
        request.upstream_header_time = ", ".join(_time_or_dash(h) for c, h in self.try_times)
        request.upstream_bytes = [(received, sent, 0 if head is None else received - head)
                                  for received, sent, head in self.try_bytes] or None

    # Timeouts --------------------------------------------------------------

    def _arm(self, timeout: float, kind: str):
        self.deadline = self.app.clock() + timeout if timeout > 0 else 0.0
        self.deadline_kind = kind

    def check_deadline(self, now: float):
        if self.state == DONE:
            return
        limit = self.proxy.request_timeout
        if limit and self.state != RELAYING and now - self.started >= limit:
            # The whole-exchange deadline: no retry can fit in what is left.
            detail = "upstream timed out (proxy_request_timeout) waiting for the response"
            self._log_upstream_error(detail, self.peer)
            self._finish_upstream(failed=False, reuse=False)
            self._give_up(504, detail)
            return
        if self.deadline == 0.0 or now < self.deadline:
            return
        kind = self.deadline_kind
        self.deadline = 0.0
        if kind == "connect":
            if self.connect_future is not None:
                self.connect_future.cancel()
                self.connect_future = None
            self._fail("timeout", 504, "upstream timed out (110: Connection timed out) "
                       "while connecting to upstream")
        elif kind == "send":
            self._fail("timeout", 504, "upstream timed out while sending request to upstream")
        else:
            self._fail("timeout", 504, "upstream timed out (110: Connection timed out) "
                       "while reading response header from upstream")


def _time_or_dash(seconds) -> str:
    """One try's $upstream_connect_time or _header_time: "-" where the try did not get there."""
    return "-" if seconds is None else f"{seconds:.3f}"
