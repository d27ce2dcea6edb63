"""The client side of HTTP/1.1: one protocol object per accepted connection.

Requests are read one at a time; pipelined requests wait in the buffer until
the previous response is complete, so responses always go out in order.
No task is created per request: handlers call back into this object.
"""

from __future__ import annotations

import asyncio

from gateway.observe.errorlog import log
from gateway.errors import (BadRequest, HttpError, PayloadTooLarge, RequestTimeout,
                            SslCertificateError, SslCertificateMissing)
from gateway.http import gzip, header_names, parser, response_heads
from gateway.http.headers import own_lines
from gateway.http.pending_head import PendingHead
from gateway.http.proxy import ProxyExchange
from gateway.http.request import Request
from gateway.http.responses import (
    ADD_HEADER_CODES, CLOSING_ERRORS, SENT_AS_400, error_page, padded, server_and_date,
    status_line_cached)

# Stop reading when this much pipelined input waits behind a response in progress.
PIPELINE_LIMIT = 64 * 1024
# An unread request body up to this size is read and dropped to keep the connection.
DISCARD_LIMIT = 64 * 1024
# A chunked body is held whole in memory before it goes upstream: with no
# client_max_body_size it is still bounded (nginx would spool it to disk).
CHUNKED_MEMORY_LIMIT = 64 * 1024 * 1024
# How long a graceful shutdown waits for a request on an idle connection (new or keep-alive).
SHUTDOWN_GRACE = 1.0

# Connection states.
HEAD, BODY, WAIT, CLOSED = range(4)


def run_cleanup(request) -> None:
    """Run a request's cleanup once (limit_conn's counts given back when it ends)."""
    cleanup, request.cleanup = request.cleanup, None
    cleanup()


class ClientConnection(asyncio.Protocol):
    """Reads requests, hands them to a handler, writes responses in order."""

    __slots__ = (
        "app", "listen_key", "transport", "buffer", "state", "deadline", "timeout_status",
        "request", "handler", "body", "keep_alive", "requests_served", "id",
        "remote_addr", "remote_port", "server_addr", "server_port", "reading_paused",
        "writing_paused", "response_started", "closing_after_response", "discarding",
        "in_read_loop", "ssl_object", "pending_head", "proxy_protocol", "pacer",
        "accepted", "leftover",
    )

    def __init__(self, app, listen_key):
        self.app = app
        self.listen_key = listen_key
        self.transport = None
        self.buffer = b""
        self.pending_head = None          # PendingHead of a head that arrives in pieces
        self.state = HEAD
        self.deadline = 0.0
        self.timeout_status = 0
        self.request = None
        self.handler = None          # the exchange answering the current request
        self.body = None             # BodyReader of the current request
        self.keep_alive = False
        self.requests_served = 0
        self.id = 0
        self.reading_paused = False
        self.writing_paused = False
        self.response_started = False
        self.closing_after_response = False
        self.discarding = False
        self.in_read_loop = False
        self.accepted = 0.0          # the loop's clock at connection_made ($connection_time)
        self.leftover = False        # the next request's bytes were read with the previous one
        self.ssl_object = None       # set by TlsClientConnection
        self.proxy_protocol = None   # ProxyAddresses, set by ProxyProtocolReader
        self.pacer = None            # limit_rate's Pacer of the response going out, or None

    # Protocol interface -------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.accepted = self.app.clock()     # $connection_time
        self.id = self.app.next_connection_id()
        # No TCP_NODELAY here: uvloop and asyncio set it on every TCP transport already.
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote_addr, self.remote_port = peer[0], peer[1]
        key = self.listen_key
        if key[0] in ("0.0.0.0", "::") or (":" in key[0] and "." in key[0]):
            local = transport.get_extra_info("sockname") or ("", 0)
            self.server_addr, self.server_port = local[0], local[1]
            self.listen_key = self.app.listen_key_for(key, self.server_addr)
        else:
            # A socket bound to one address: that address is the local one, known
            # without asking the transport (nginx skips getsockname() the same way).
            self.server_addr, self.server_port = key[0], key[1]
        if len(self.app.connections) >= self.app.max_connections:
            # nginx's behaviour too: over worker_connections, new connections are dropped.
            self.app.connections_refused()
            self.state = CLOSED
            transport.abort()
            return
        self.app.connections.add(self)
        server = self.app.default_server(self.listen_key)
        self._arm(server.client_header_timeout, 408)
        if self.app.shutting_down:      # accepted as the app began to stop: one request, a grace
            self.shutdown(True)

    def data_received(self, data):
        if self.state == CLOSED:
            return
        if self.pending_head is not None:
            # The rest of a head that arrives in pieces; self.buffer keeps its beginning.
            try:
                data = self.pending_head.add(data)
            except HttpError as exc:
                self._reject(exc)
                return
            if data is not None:
                self.buffer = data
                self._read_requests()
            return
        self.buffer = self.buffer + data if self.buffer else data
        if self.state == HEAD:
            self._read_requests()
        elif self.state == BODY:
            self._read_body()
        elif len(self.buffer) > PIPELINE_LIMIT and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self):
        if self.state == BODY and self.body is not None and not self.body.done:
            if self.handler is not None:
                self.handler.client_aborted()
        elif self.state == HEAD:
            self.close()
        return False

    def connection_lost(self, exc):
        self.state = CLOSED
        self.app.connection_closed(self)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.client_aborted()
        request = self.request
        if request is not None:
            if getattr(request, "cleanup", None) is not None:
                run_cleanup(request)      # a request that never finished
            request.connection = None

    def pause_writing(self):
        self.writing_paused = True
        if self.handler is not None:
            self.handler.client_write_paused()

    def resume_writing(self):
        self.writing_paused = False
        if self.handler is not None and (self.pacer is None or not self.pacer.delayed):
            self.handler.client_write_resumed()

    # Reading requests ----------------------------------------------------

    def _read_requests(self):
        # Iterative, not recursive: a buffer of pipelined requests that are answered
        # synchronously loops here instead of growing the stack.
        if self.in_read_loop:
            return
        self.in_read_loop = True
        try:
            while self.state == HEAD and self.buffer:
                server = self.app.default_server(self.listen_key)
                number, size = server.large_client_header_buffers
                try:
                    head = parser.parse_request_head(self.buffer, size, size * number)
                    if head is None:
                        if self.pending_head is None:
                            self.pending_head = PendingHead(self.buffer, size, size * number)
                        else:
                            self.pending_head.settle(self.buffer)
                        return
                    self.pending_head = None
                    self._start_request(head)
                except HttpError as exc:
                    self._reject(exc)
                    return
        finally:
            self.in_read_loop = False

    def _start_request(self, head):
        method, target, version, headers, consumed, odd_names = head
        raw = self.buffer[:consumed] if odd_names else None
        self.buffer = self.buffer[consumed:]
        uri, args, request_uri = parser.split_target(target)
        request = Request(method.decode("latin-1"), request_uri, uri, args, version, headers)
        request.start_time = self.app.clock()
        request.request_length = consumed
        request.remote_addr = self.remote_addr
        request.remote_port = self.remote_port
        request.server_addr = self.server_addr
        request.server_port = self.server_port
        request.connection_id = self.id
        request.connection = self
        if self.leftover:
            request.pipelined = True
        if self.ssl_object is not None:
            request.scheme = "https"
            request.ssl_object = self.ssl_object
        if self.proxy_protocol is not None:
            request.proxy_protocol = self.proxy_protocol
        self.requests_served += 1
        request.connection_requests = self.requests_served
        self.request = request
        self.response_started = False
        self.closing_after_response = False

        host = request.header("host")
        if version == 11 and host is None:
            raise BadRequest('client sent HTTP/1.1 request without "Host" header')
        absolute = target[:1] != b"/" and b"://" in target[:16]
        if absolute:
            # RFC 9112 3.2.2: an absolute-form target's authority replaces Host.
            request.host = _host_name(target.split(b"/", 3)[2].decode("latin-1"))
        elif host is not None:
            if "," in host:
                raise BadRequest('client sent duplicate host header')
            request.host = _host_name(host)
        server = self.app.server_router.select(self.listen_key, request.host or None)
        request.server = server
        request.server_name = server.server_names[0] if server.server_names else ""
        if odd_names:
            headers = header_names.screen_http1(request, raw, absolute,
                                                self.app.default_server(self.listen_key), server)
        if server.tls.verify and self.ssl_object is not None and self.certificate_refused():
            return
        real_ip = getattr(server.plan, "post_read_real_ip", None)
        if real_ip is not None:
            real_ip.apply(request)      # nginx's post-read phase: the server's settings
        self.keep_alive = _wants_keep_alive(request)

        kind, length = parser.request_body_framing(headers, version)
        self.state = BODY if kind != "none" else WAIT
        self.body = BodyReader(kind, length) if kind != "none" else None
        self.deadline = 0.0
        self.app.dispatch(self, request)
        if self.state == BODY:
            self._read_body()

    def _read_body(self):
        body = self.body
        try:
            used, pieces = body.consume(self.buffer)
        except HttpError as exc:
            self._reject(exc)
            return
        self.buffer = self.buffer[used:] if used < len(self.buffer) else b""
        handler = self.handler
        if pieces and handler is not None:
            handler.client_body(pieces)
        if body.done:
            self.state = WAIT
            self.deadline = 0.0
            if handler is not None:
                handler.client_body_end()
            elif self.discarding:
                self.discarding = False
                self._next_request()
        elif self.state == BODY:
            self._arm(body.timeout, 408)

    def proxy_exchange(self, request, plan):
        """A ProxyExchange for `plan`'s upstream, not started yet (the caller may hand it body
        pieces first): how a composed location proxies once its parts have passed."""
        if plan.proxy.cache is not None:
            from gateway.http.proxy_cache import cache_exchange
            exchange = cache_exchange(self, request, plan, self.app)
        elif plan.gzip is None:
            exchange = ProxyExchange(self, request, plan, self.app)
        else:
            exchange = plan.gzip.exchange_class(self, request, plan, self.app)
        self.handler = exchange
        return exchange

    def set_body_limit(self, limit: int, timeout: float):
        """Apply the location's client_max_body_size and client_body_timeout."""
        body = self.body
        if body is None:
            return
        body.timeout = timeout
        body.limit = limit if limit or body.kind != "chunked" else CHUNKED_MEMORY_LIMIT
        if limit and body.kind == "length" and body.remaining > limit:
            raise PayloadTooLarge(
                f"client intended to send too large body: {body.remaining} bytes")
        self._arm(timeout, 408)

    def body_pending(self) -> bool:
        return self.state == BODY

    # Writing responses ---------------------------------------------------

    def send_head(self, status: int, header_lines: bytes, add_headers=None, body: bytes = b"",
                  own=None):
        """Write a status line, our Server/Date, the header lines, Connection, then ``body``.

        Head and a body already at hand go out in one write: one system call per response.
        ``own``: (our Server line, our Date line) when the upstream's replace one of them.
        """
        request = self.request
        request.status = status
        self.response_started = True
        if self.closing_after_response or self.app.shutting_down or \
                (self.state == BODY and not self._body_discardable()):
            self.keep_alive = False
        where = request.location if request.location is not None else request.server
        tokens = where.settings.server_tokens if where is not None else True
        parts = [status_line_cached(status), server_and_date.lines(tokens), header_lines]
        if own is not None:
            parts[1] = own_lines(parts[1], *own)
        if add_headers:
            if response_heads.wanted():     # $sent_http_* in add_header: the fields so far
                response_heads.record(request, response_heads.SENT, header_lines)
            parts.append(self._render_add_headers(status, add_headers))
        parts.append(b"Connection: keep-alive\r\n\r\n" if self.keep_alive
                     else b"Connection: close\r\n\r\n")
        if body:
            parts.append(body)
            request.body_bytes_sent += len(body)
        data = b"".join(parts)
        request.bytes_sent += len(data)
        if response_heads.wanted():
            response_heads.record(request, response_heads.SENT, data)
        if self.pacer is None:
            self.transport.write(data)
        else:
            self.pacer.write(data)

    def _render_add_headers(self, status, add_headers):
        out = []
        applies = status in ADD_HEADER_CODES
        for name, template, always in add_headers:
            if applies or always:
                value = template.render(self.request)
                if value:
                    out.append(b"%s: %s\r\n" % (name, value.encode("latin-1", "replace")))
        return b"".join(out)

    def send_body(self, data):
        self.request.body_bytes_sent += len(data)
        self.request.bytes_sent += len(data)
        if self.pacer is None:
            self.transport.write(data)
        else:
            self.pacer.write(data)

    def send_raw(self, data):
        """Bytes that are neither head nor body (100 Continue, a last chunk), in order.

        Every write to the client goes through this object: the compiled twin sends
        straight to the socket when nothing is pending, which is right only if so.
        """
        if self.pacer is None:
            self.transport.write(data)
        else:
            self.pacer.write(data)

    def write_now(self, data):
        """Write to the socket now, past the pacer (gateway/http/limit_rate.py)."""
        self.transport.write(data)

    def send_simple(self, status: int, body: bytes = b"", content_type: bytes | None = b"text/html",
                    extra: bytes = b"", add_headers=None, empty_type: bool = False):
        """A complete response with an in-memory body."""
        request = self.request
        where = request.location if request.location is not None else request.server
        if body and where is not None and where.settings.gzip:
            extra = gzip.simple(self, status, body, content_type, extra, add_headers)
            if extra is None:
                return      # sent compressed
        lines = []
        if content_type is not None and (body or empty_type):
            lines.append(b"Content-Type: %s\r\n" % content_type)
        if status not in (204, 304) and not 100 <= status < 200:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(extra)
        self.send_head(status, b"".join(lines), add_headers,
                       body if self.request.method != "HEAD" else b"")
        self.finish_response()

    def send_error(self, status: int, add_headers=None):
        """nginx's error page for ``status``; closes after errors that leave input unread."""
        if status in CLOSING_ERRORS:
            self.closing_after_response = True
        app = self.app
        if getattr(app, "error_pages_in_use", False) and app.answer_error_page(self, status):
            return
        request = self.request
        where = request.location if request.location is not None else request.server
        tokens = where.settings.server_tokens if where is not None else True
        sent = 400 if status in SENT_AS_400 else status
        self.send_simple(sent, padded(request, sent, error_page(status, tokens)),
                         b"text/html", b"", add_headers)

    def _body_discardable(self) -> bool:
        body = self.body
        return body.kind == "length" and body.remaining <= DISCARD_LIMIT

    def finish_response(self):
        """The current response is complete: log it and go on with the next request."""
        if self.pacer is not None and self.pacer.holds_finish():
            return      # once the bytes limit_rate holds are sent
        request = self.request
        self.handler = None
        if request is not None:
            self.app.log_request(request)
            if getattr(request, "cleanup", None) is not None:
                run_cleanup(request)
            request.connection = None     # no cycle with self.request once logged
        # The previous request ended with bytes of the next one already read: that one is
        # pipelined ($pipe, nginx's hc->pipeline).
        self.leftover = bool(self.buffer)
        if self.state == CLOSED:
            return
        if not self.keep_alive:
            self.close()
        elif self.state == BODY:
            if self._body_discardable():
                self.discarding = True    # _read_body goes on once the body is in
            else:
                self.close()
        else:
            self._next_request()

    def _next_request(self):
        request = self.request
        self.request = None
        self.body = None
        self.state = HEAD
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        location_settings = request.location.settings if request.location is not None \
            else request.server.settings
        if self.requests_served >= location_settings.keepalive_requests:
            self.close()
            return
        if self.buffer:
            self._arm(request.server.client_header_timeout, 408)
            self._read_requests()
        else:
            self._arm(location_settings.keepalive_timeout, 0)

    def close(self):
        if self.state != CLOSED:
            self.state = CLOSED
            self.transport.close()

    # Errors and timeouts -------------------------------------------------

    def _reject(self, exc: HttpError):
        """Answer a request we cannot take, then close (the input is in an unknown state)."""
        self.pending_head = None
        if self.request is None:
            self.request = Request("", "", "", "", 10, [])
            self.request.remote_addr = self.remote_addr
            self.request.server = self.app.default_server(self.listen_key)
            self.request.start_time = self.app.clock()
            self.request.connection = self
        if self.response_started or self.state == CLOSED:
            self.close()
            return
        if log.enabled("info"):
            log.info(f"*{self.id} "
                     f"{exc.detail} while reading client request, client: {self.remote_addr}")
        self.state = WAIT
        self.keep_alive = False
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.cancel()
        self.send_error(exc.status)

    def certificate_refused(self) -> bool:
        """nginx's check of the client certificate against the server Host chose; True
        once the request is answered with 495 or 496."""
        from gateway.http import client_cert
        refused = client_cert.refusal(self.ssl_object, self.request.server.tls.verify)
        if refused is None:
            return False
        status, text = refused
        self._reject((SslCertificateError if status == 495 else SslCertificateMissing)(text))
        return True

    def _arm(self, timeout: float, status: int):
        self.deadline = self.app.clock() + timeout if timeout > 0 else 0.0
        self.timeout_status = status

    def check_deadline(self, now: float):
        """Called by the app's sweep: enforce header, body and keep-alive timeouts."""
        handler = self.handler
        if handler is not None:
            handler.check_deadline(now)
        if self.deadline == 0.0 or now < self.deadline or self.state == CLOSED:
            return
        self.deadline = 0.0
        if self.timeout_status and (self.buffer or self.state == BODY or self.request is not None):
            self._reject(RequestTimeout("client timed out"))
        else:
            self.close()

    def shutdown(self, graceful: bool):
        """Close now if not graceful; otherwise after the current response, or a short grace."""
        if not graceful:
            self.close()
            return
        self.keep_alive = False
        if self.state == HEAD and not self.buffer:
            # Idle, just accepted or between keep-alive requests: a request may be on its way
            # (a client reusing its connection cannot know we stop, and closing under it resets
            # it). A short grace: a request that comes is answered with Connection: close.
            grace = self.app.clock() + SHUTDOWN_GRACE
            if self.deadline == 0.0 or self.deadline > grace:
                self.deadline = grace


class TlsClientConnection(ClientConnection):
    """A client connection on a ``listen ... ssl`` socket, made once its handshake is done.

    Decided per connection, so plain connections do no TLS work per request.
    """

    __slots__ = ()

    def connection_made(self, transport):
        self.ssl_object = transport.get_extra_info("ssl_object")
        self.app.handshakes.pop(self, None)
        super().connection_made(transport)
        if self.app.shutting_down and self.state != CLOSED:
            self.shutdown(True)      # accepted before a graceful stop, handshake done after it

    def close(self):
        # Idle between requests (keep-alive or header timeout): send close_notify and close
        # at once, as nginx does, instead of waiting for the client's close_notify.
        if self.state == HEAD and not self.buffer and \
                not self.transport.get_write_buffer_size():
            self.state = CLOSED
            self.transport.close()       # writes the close_notify alert
            self.transport.abort()       # and does not wait for the answer
            return
        super().close()

    def shutdown(self, graceful: bool):
        # A fast stop does not flush or wait for the client's close_notify.
        if not graceful and self.state != CLOSED:
            self.state = CLOSED
            self.transport.abort()
            return
        super().shutdown(graceful)


class BodyReader:
    """Takes a request body off the connection buffer: Content-Length or chunked."""

    __slots__ = ("kind", "remaining", "decoder", "done", "limit", "timeout", "received")

    def __init__(self, kind: str, length: int):
        self.kind = kind
        self.remaining = length
        self.decoder = parser.ChunkedDecoder() if kind == "chunked" else None
        self.done = kind == "length" and length == 0
        self.limit = 0
        self.timeout = 60.0
        self.received = 0

    def consume(self, data: bytes):
        """Return (bytes used from data, list of body pieces)."""
        if self.done or not data:
            return 0, None
        if self.kind == "length":
            take = min(self.remaining, len(data))
            self.remaining -= take
            self.done = self.remaining == 0
            self.received += take
            return take, [data if take == len(data) else data[:take]]
        used, pieces = self.decoder.feed(data, True)
        self.done = self.decoder.done
        for piece in pieces or ():
            self.received += len(piece)
        if self.limit and self.received > self.limit:
            raise PayloadTooLarge(f"client intended to send too large chunked body: "
                                  f"{self.received}+ bytes")
        return used, pieces


def _host_name(value: str) -> str:
    """A Host header value as nginx stores $host: lowercase, no port, no trailing dot."""
    if value.isalnum():
        return value.lower()
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise BadRequest("client sent invalid host header")
        return host[:end + 1]
    host = host.split(":", 1)[0].rstrip(".")
    if "/" in host or " " in host or "\\" in host:
        raise BadRequest("client sent invalid host header")
    return host


def _wants_keep_alive(request: Request) -> bool:
    value = request.header("connection")
    if value is None:
        return request.version == 11
    tokens = value.lower()
    if request.version == 11:
        return "close" not in tokens
    return "keep-alive" in tokens
