"""Proxying one request to an HTTP upstream: peer choice, retries, relay both ways.

Retry rules mirror nginx's proxy_next_upstream: only before any response byte
reached the client, only for the configured conditions, never for a sent
non-idempotent request unless ``non_idempotent``, never once a streamed body
can no longer be replayed.  A failure on a reused keep-alive connection before
any response byte is retried once on a fresh connection without spending a try.
"""

from __future__ import annotations

import asyncio

from gateway.observe.errorlog import log
from gateway.errors import HttpError, UpstreamError
from gateway.http import parser
from gateway.http.plan import HIDDEN_RESPONSE, NON_IDEMPOTENT, UPSTREAM_STATUS_CONDITIONS
from gateway.http.upstream_connection import UpstreamConnection

# Request bodies up to this size are kept so that a retry can send them again.
REPLAY_LIMIT = 1024 * 1024
# Body bytes held while no upstream connection is ready before client reading pauses.
PENDING_LIMIT = 256 * 1024
# nginx's proxy_buffer_size is 4k/8k; we accept larger heads but not without bound.
MAX_RESPONSE_HEAD = 64 * 1024

# Exchange states.
CONNECTING, WAITING, RELAYING, DONE = range(4)


class ProxyExchange:
    """One client request on its way to an upstream and back."""

    __slots__ = (
        "conn", "request", "plan", "proxy", "loop", "app", "peers", "next_peer", "peer",
        "upstream", "state", "head", "body_parts", "body_size", "body_complete",
        "replayable", "request_sent", "tries", "started", "try_started", "deadline",
        "deadline_kind", "response_buffer", "framing", "remaining", "decoder",
        "wrap_chunks", "reusable", "client_paused", "upstream_paused", "connect_future",
        "header_time", "addresses", "statuses", "times", "buffer_body", "fresh_retry_done",
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
        self.state = CONNECTING
        self.body_parts = []
        self.body_size = 0
        self.body_complete = not conn.body_pending()
        # Chunked bodies are read whole and sent with a Content-Length, as nginx does.
        self.buffer_body = conn.body is not None and conn.body.kind == "chunked"
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
        self.fresh_retry_done = False
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
        parts = [b"%s %s %s\r\n" % (request.method.encode("latin-1"),
                                      target.encode("utf-8", "surrogateescape"), proxy.http_version)]
        for name, template in proxy.set_headers:
            value = template.render(request)
            if value:
                parts.append(b"%s: %s\r\n" % (name, value.encode("latin-1", "replace")))
        dropped = proxy.dropped
        for lower, name, value in request.headers:
            if lower not in dropped:
                parts.append(b"%s: %s\r\n" % (name, value))
        return b"".join(parts)

    def _head_with_length(self) -> bytes:
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
        upstream = self.proxy.upstream
        cached = upstream.pool.take(peer) if allow_cached and self.proxy.keepalive else None
        if cached is not None:
            self._attach(cached)
            return
        self.state = CONNECTING
        self._arm(self.proxy.connect_timeout, "connect")
        factory = lambda: UpstreamConnection(upstream.pool, peer)  # noqa: E731
        tls = self.proxy.tls
        if tls is None:
            connecting = self.loop.create_connection(factory, peer.host, peer.port)
        else:
            connecting = tls.connect(self.loop, factory, peer.host, peer.port, self.request)
        future = asyncio.ensure_future(connecting)
        self.connect_future = future
        future.add_done_callback(self._connected)

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
            self._fail("error", 502, f"connect() failed ({exc}) while connecting to upstream")
            return
        self._attach(future.result()[1])

    def _attach(self, upstream: UpstreamConnection):
        self.upstream = upstream
        upstream.exchange = self
        upstream.requests += 1
        self.state = WAITING
        self.response_buffer = b""
        transport = upstream.transport
        self.request_sent = True
        transport.write(self._head_with_length())
        if self.proxy.pass_body:
            for part in self.body_parts:
                transport.write(part)
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
                    self.upstream.transport.write(piece)
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

    def upstream_data(self, data):
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
            rest = self.response_buffer[consumed:]
            self.response_buffer = b""
            if 100 <= status < 200 and status != 101:
                self.response_buffer = rest   # interim responses are not relayed
                continue
            self._start_response(version, status, headers, rest)
            return

    def _start_response(self, version, status, headers, rest):
        now = self.app.clock()
        self.header_time = now - self.try_started
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
        request = self.request
        self.statuses.append(status)
        kind, length = parser.response_body_framing(status, headers, request.method)
        upstream_close = version == 10
        lines = []
        for lower, name, value in headers:
            if lower in HIDDEN_RESPONSE:
                if lower == b"connection" and b"close" in value.lower():
                    upstream_close = True
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        conn = self.conn
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
        if kind == "length" and 0 < length <= len(rest):
            # The whole body came with the head: answer with a single write.
            if len(rest) > length:
                self.reusable = False
            self.remaining = 0
            conn.send_head(status, b"".join(lines), self.plan.add_headers,
                           rest if len(rest) == length else rest[:length])
            self._complete()
            return
        conn.send_head(status, b"".join(lines), self.plan.add_headers)
        if kind == "none" or (kind == "length" and length == 0):
            self._complete()
        elif rest:
            self._relay(rest)

    def _relay(self, data):
        kind = self.framing
        conn = self.conn
        if kind == "length":
            if len(data) >= self.remaining:
                if len(data) > self.remaining:
                    self.reusable = False   # bytes after the body: do not trust the connection
                    data = data[:self.remaining]
                self.remaining = 0
                conn.send_body(data)
                self._complete()
                return
            self.remaining -= len(data)
            conn.send_body(data)
        elif kind == "chunked":
            try:
                if self.request.version == 11:
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

    def upstream_eof(self):
        if self.state == RELAYING and self.framing == "close":
            if self.wrap_chunks:
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
        self.times.append(self.app.clock() - self.try_started)
        self._finish_upstream(failed=False, reuse=self.reusable and self.body_complete)
        self.state = DONE
        if self.plan.access_logs:
            self._record()
        self.conn.finish_response()

    def _finish_upstream(self, failed: bool, reuse: bool):
        """Report the try to the balancer and put the connection back or close it."""
        self.deadline = 0.0
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
            log.error(f'{detail} while connecting to upstream, client: {self.request.remote_addr}, '
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

    def _log_upstream_error(self, detail, peer):
        request = self.request
        where = f"{peer.host}:{peer.port}" if peer is not None else "-"
        log.error(f'{detail}, client: {request.remote_addr}, server: {request.server_name}, '
                  f'request: "{request.method} {request.request_uri} {request.protocol}", '
                  f'upstream: "http://{where}{self.proxy.upstream_uri(request)}", '
                  f'host: "{request.host}"')

    def _record(self):
        """Fill the $upstream_* variables (only needed by access logs)."""
        request = self.request
        request.upstream_addr = ", ".join(f"{p.host}:{p.port}" for p in self.addresses)
        request.upstream_status = ", ".join(map(str, self.statuses))
        request.upstream_response_time = ", ".join(f"{t:.3f}" for t in self.times)
        request.upstream_header_time = f"{self.header_time:.3f}" if self.header_time else "-"

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
