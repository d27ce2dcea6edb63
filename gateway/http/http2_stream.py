"""One HTTP/2 request stream, seen by the handlers as a client connection (gateway/http/http2.py).

The head a handler writes becomes a HEADERS frame, its body DATA frames within the client's
flow-control windows; pausing the stream's "transport" holds back the WINDOW_UPDATEs that
let the client send more request body.
"""

from __future__ import annotations

import re
import weakref
from collections import deque

import h2.exceptions
from h2.errors import ErrorCodes

from gateway.errors import BadRequest, HttpError, PayloadTooLarge
from gateway.http import connection as http1
from gateway.http import header_names, parser, protocol
from gateway.http.responses import server_and_date

BODY, WAIT, CLOSED = http1.BODY, http1.WAIT, http1.CLOSED
# Connection-specific fields (RFC 9113 8.2.2): never sent in an HTTP/2 response.
CONNECTION_FIELDS = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                               b"transfer-encoding", b"upgrade"})
# A stream's handler is paused once this much response body waits beyond its window.
PENDING_LIMIT = 64 * 1024
# Field names as nginx judges them (ngx_http_v2_validate_header): lowercase letters, digits
# and "-" are valid; CTL, SP, DEL, ":" and uppercase letters reset the stream; any other byte
# makes a name nginx calls invalid (gateway/http/header_names.py decides about those).
_PLAIN_NAME = re.compile(rb"[-0-9a-z]+").fullmatch
_BAD_NAME = re.compile(rb"[\x00-\x20:A-Z\x7f]").search


class StreamConnectionPy(http1.ClientConnection):
    """The pure-Python twin of _fastpath/proxyproto.pyx's StreamConnection: what a stream
    asks of the connection class under it, by names both twins give."""

    __slots__ = ()

    def dispatch_request(self, request):
        """Route the stream's request and start answering it."""
        self.app.dispatch(self, request)

    def reject(self, exc):
        """Answer a request that cannot be taken with exc's status."""
        self._reject(exc)

    def arm(self, timeout: float, status: int):
        """Set the stream's deadline: ``status`` answers it, 0 closes."""
        self._arm(timeout, status)

    def render_add_headers(self, status: int, add_headers):
        """The add_header lines that apply to ``status``."""
        return self._render_add_headers(status, add_headers)


# The compiled connection class when the compiled path is in use, so that a stream's
# request is routed and proxied by the compiled _dispatch and ProxyExchange (and the class
# below is the specification of _fastpath/h2stream.pxi's, selected at the end).
if protocol.IMPLEMENTATION == "cython":
    from _fastpath.proxyproto import BodyReader, StreamConnection
    from _fastpath.request import Request
else:
    from gateway.http.connection import BodyReader
    from gateway.http.request import Request
    StreamConnection = StreamConnectionPy


class Http2Stream(StreamConnection):
    """One request stream, seen by handlers as a client connection with one request.

    The head a handler writes becomes HEADERS, its body DATA frames queued in ``pending``
    and sent as the stream's and the connection's windows allow; while more than a window
    waits the handler is paused (client_write_paused), as a full socket buffer pauses it
    on HTTP/1.1.  ``transport`` is the stream itself: pausing its reading holds back the
    WINDOW_UPDATEs that let the client send more request body.
    """

    __slots__ = ("conn", "stream_id", "head", "pending", "pending_size", "ending", "ended",
                 "paused", "reading_held", "unacked", "logged", "dechunking", "trailers",
                 "__weakref__")

    def __init__(self, conn, stream_id: int):      # conn: its http2.Http2Connection
        super().__init__(conn.app, conn.listen_key)
        self.conn = conn
        self.stream_id = stream_id
        # A proxy, not the stream itself: a stream referring to itself is a cycle that only
        # the cyclic collector frees, and with it every request's objects.
        self.transport = weakref.proxy(self)
        self.state = WAIT            # a stream carries one request: no head to wait for
        self.keep_alive = True
        self.requests_served = 1
        self.id = conn.id
        self.remote_addr, self.remote_port = conn.remote_addr, conn.remote_port
        self.server_addr, self.server_port = conn.server_addr, conn.server_port
        self.ssl_object = conn.ssl_object
        self.head = None
        self.pending = deque()
        self.pending_size = 0
        self.ending = False
        self.ended = False
        self.paused = False
        self.reading_held = False
        self.unacked = 0
        self.logged = False
        self.dechunking = False      # add_trailer: the body comes in our chunks (trailers.py)
        self.trailers = None         # add_trailer's fields, sent as the last HEADERS frame

    # The request --------------------------------------------------------

    def start(self, fields, ended: bool, block_length: int):
        """Build the Request from the header block (``block_length`` bytes as it came) and
        hand it to the app."""
        split = split_block(self.conn, fields)
        if split is not None:
            self.start_split(split[0], split[1], split[2], split[3], split[4], block_length,
                             ended, split[5], split[6])

    def start_split(self, method, path, authority, scheme, headers, size, ended, bad_name,
                    odd_names):
        """start() once the block is split into pseudo-headers and fields (the compiled
        session splits it in C, checking the limits and the names as start does).

        ``size``: the block's length as it came, the start of $request_length (nginx's);
        ``odd_names``: a field name has other bytes than a-z, 0-9 and "-"."""
        app = self.app
        conn = self.conn
        if bad_name:
            # nginx: "client sent invalid header name", RST_STREAM PROTOCOL_ERROR.
            conn.h2.reset_stream(self.stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.state = CLOSED
            conn.stream_done(self)
            return
        try:
            if not method or not scheme or method == b"CONNECT" or not path:
                raise BadRequest("client sent no :method, :scheme or :path header")
            uri, args, request_uri = parser.split_target(path)
        except HttpError as exc:
            self.request = self._bare_request()
            self.reject(exc)
            return
        request = Request(method.decode("latin-1"), request_uri, uri, args, 20, headers)
        request.start_time = app.clock()
        request.request_length = size
        request.remote_addr = self.remote_addr
        request.remote_port = self.remote_port
        request.server_addr = self.server_addr
        request.server_port = self.server_port
        request.connection_id = self.id
        request.connection_requests = self.conn.requests_served
        request.connection = self.conn     # $connection_time, $tcpinfo_* ($pipe stays ".")
        if self.ssl_object is not None:
            request.scheme = "https"
            request.ssl_object = self.ssl_object
        self.request = request
        host = authority.decode("latin-1") if authority else request.header("host")
        if authority and request.header("host") is None:
            # nginx (before 1.25) gives :authority to the request as its Host header.
            headers.insert(0, (b"host", b"host", authority))
        try:
            if host is not None:
                request.host = http1._host_name(host)
        except HttpError as exc:
            self.reject(exc)
            return
        server = app.server_router.select(self.listen_key, request.host or None)
        request.server = server
        request.server_name = server.server_names[0] if server.server_names else ""
        if odd_names:
            headers = header_names.screen_http2(request, bool(authority), conn.server, server)
        if server.tls.verify and self.ssl_object is not None and self.certificate_refused():
            return
        real_ip = getattr(server.plan, "post_read_real_ip", None)
        if real_ip is not None:
            real_ip.apply(request)
        if not ended:
            length = request.header("content-length")
            # Without content-length the length is known at END_STREAM: "chunked" makes the
            # proxy read it whole and send a Content-Length, as nginx does.
            try:
                self.body = BodyReader("chunked", 0) if length is None \
                    else BodyReader("length", int(length))
            except (ValueError, OverflowError):
                self.reject(BadRequest("client sent invalid \"Content-Length\" header"))
                return
            self.body.done = False      # END_STREAM ends it (body_end), whatever the length
            self.state = BODY
        try:
            self.dispatch_request(request)
        except HttpError as exc:
            self.reject(exc)

    def _bare_request(self):
        request = Request("", "", "", "", 20, [])
        request.remote_addr = self.remote_addr
        request.server = self.conn.server
        request.start_time = self.app.clock()
        return request

    def body_data(self, data: bytes, flow_length: int):
        body = self.body
        body.received += len(data)
        self.request.request_length += len(data)     # nginx counts the body as it is read
        if body.kind == "length":
            body.remaining = max(body.remaining - len(data), 0)
        if body.limit and body.received > body.limit and not self.response_started:
            self.reject(PayloadTooLarge(
                f"client intended to send too large body: {body.received}+ bytes"))
            return
        if self.reading_held:
            self.unacked += flow_length
        else:
            self.conn._acknowledge(self.stream_id, flow_length)
        handler = self.handler
        if handler is not None and data:
            handler.client_body([data])
        if self.state == BODY:
            self.arm(body.timeout, 408)

    def body_end(self):
        body = self.body
        if body is None or body.done:
            return
        body.done = True
        body.remaining = 0
        if self.state == BODY:
            self.state = WAIT
        self.deadline = 0.0
        if self.handler is not None:
            self.handler.client_body_end()

    # The stream as its own transport (request body flow control) ---------

    def pause_reading(self):
        self.reading_held = True

    def resume_reading(self):
        self.reading_held = False
        if self.unacked and not self.ended:
            self.conn._acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
            self.conn.schedule_flush(self)

    def is_closing(self) -> bool:
        return self.state == CLOSED

    def get_write_buffer_size(self) -> int:
        return self.pending_size

    # Writing the response ------------------------------------------------

    def send_head(self, status: int, header_lines: bytes, add_headers=None, body: bytes = b"",
                  own=None):
        request = self.request
        request.status = status
        self.response_started = True
        where = request.location if request.location is not None else request.server
        tokens = where.settings.server_tokens if where is not None else True
        head = [(b":status", b"%d" % status), *_server_and_date(tokens)]
        if own is not None:     # the upstream's Server or Date replaces ours
            head = [head[0]] + [(k, v) for k, v in head[1:]
                                if (k == b"server" and own[0]) or (k == b"date" and own[1])]
        _fields(head, header_lines)
        if add_headers:
            _fields(head, self.render_add_headers(status, add_headers))
        self.head = head
        request.bytes_sent += sum(len(k) + len(v) + 4 for k, v in head)
        if body:
            self.send_body(body)
        else:
            self.conn.schedule_flush(self)

    def send_body(self, data):
        request = self.request
        request.body_bytes_sent += len(data)
        request.bytes_sent += len(data)
        if self.dechunking:
            data = self._dechunk(data)
        if self.pacer is None:
            self.write_now(data)
        else:
            self.pacer.write(data)

    def write_now(self, data):
        """Queue DATA now, past the pacer (gateway/http/limit_rate.py paces each stream,
        as nginx's write filter does on the stream's own connection)."""
        if self.state == CLOSED or not data:
            return
        self.pending.append(data)
        self.pending_size += len(data)
        self.conn.schedule_flush(self)
        if not self.paused and self.pending_size > PENDING_LIMIT:
            self.pause()

    def expect_trailers(self):
        """add_trailer applies (trailers.py): the body comes framed in our chunks, the last
        one with the fields; they go as a HEADERS frame with END_STREAM after the last DATA
        frame, as ngx_http_v2_create_trailers_frame sends them (none when all are empty)."""
        self.dechunking = True

    def _dechunk(self, data) -> bytes:
        # Whole chunks only: trailers.chunk() and last_chunk() make each piece given here.
        out = []
        while data:
            size_end = data.index(b"\r\n")
            size = int(data[:size_end], 16)
            if size == 0:
                block = data[size_end + 2:-2]
                fields = []
                _fields(fields, block)
                self.trailers = fields or None
                self.dechunking = False
                break
            start = size_end + 2
            out.append(data[start:start + size])
            data = data[start + size + 2:]
        return b"".join(out)

    def send_raw(self, data):
        """An HTTP/1.1 interim response or last chunk: only add_trailer's last chunk counts."""
        if self.dechunking:
            data = self._dechunk(data)
            if self.pacer is None:
                self.write_now(data)
            else:
                self.pacer.write(data)

    def finish_response(self):
        if self.pacer is not None and self.pacer.holds_finish():
            return      # once the bytes limit_rate holds are queued
        request = self.request
        self.handler = None
        if request is not None and not self.logged:
            self._log(request)
        if self.state == CLOSED:
            self.conn.stream_done(self)
            return
        self.ending = True
        self.conn.schedule_flush(self)

    def close(self):
        """A handler cuts the answer short: the stream is reset, the connection stays."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.pending.clear()
        self.pending_size = 0
        if not self.ended:
            self.ended = True
            try:
                self.conn.h2.reset_stream(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            self.conn.schedule_flush(self)
        self.conn.stream_done(self)

    def flush(self):
        """Send what the windows allow; END_STREAM once the handler finished."""
        if self.ended or self.state == CLOSED:
            return
        h2c = self.conn.h2
        stream_id = self.stream_id
        try:
            if self.head is not None:
                done = self.ending and not self.pending and self.trailers is None
                h2c.send_headers(stream_id, self.head, end_stream=done)
                self.head = None
                if done:
                    self._ended()
                    return
            pending = self.pending
            while pending:
                window = h2c.local_flow_control_window(stream_id)
                if window <= 0 or self.conn.writing_paused:
                    break
                if len(pending) > 1:
                    pending = self.pending = deque([b"".join(pending)])
                data = pending[0]
                size = min(window, h2c.max_outbound_frame_size)
                if len(data) > size:
                    pending[0] = data[size:]
                    data = data[:size]
                else:
                    pending.popleft()
                self.pending_size -= len(data)
                last = self.ending and not pending and self.trailers is None
                h2c.send_data(stream_id, data, end_stream=last)
                if last:
                    self._ended()
                    return
            if not pending:
                if self.ending:
                    if self.trailers is not None:
                        h2c.send_headers(stream_id, self.trailers, end_stream=True)
                    elif self.response_started:
                        h2c.end_stream(stream_id)
                    else:     # finished without an answer: nothing to end but the stream
                        h2c.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                    self._ended()
                    return
                if self.paused and not self.conn.writing_paused:
                    self.paused = self.writing_paused = False
                    if self.handler is not None and \
                            (self.pacer is None or not self.pacer.delayed):
                        self.handler.client_write_resumed()
        except h2.exceptions.ProtocolError:     # reset meanwhile, or closed
            self.state = CLOSED
            self.ended = True
            self.conn.stream_done(self)

    def _ended(self):
        self.ended = True
        self.state = CLOSED
        self.conn.stream_done(self)
        body = self.body
        if body is not None and not body.done and not (body.kind == "length" and body.remaining == 0):
            # The answer is complete before the request body: nginx stops it with
            # RST_STREAM NO_ERROR (RFC 9113 8.1). Not when every byte the content-length
            # announced is in and only END_STREAM is still to come (a client may send it in a
            # frame of its own): resetting then makes the client fail a request it completed.
            try:
                self.conn.h2.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
            except h2.exceptions.ProtocolError:
                pass

    def pause(self):
        if not self.paused:
            # writing_paused tells limit_rate's Pacer not to resume the handler meanwhile.
            self.paused = self.writing_paused = True
            if self.handler is not None and (self.pacer is None or not self.pacer.delayed):
                self.handler.client_write_paused()

    def reset_by_peer(self):
        """RST_STREAM from the client, or the connection lost: the request is abandoned."""
        if self.state == CLOSED and self.handler is None:
            return
        self.state = CLOSED
        self.ended = True
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.client_aborted()
        elif self.request is not None and not self.logged:
            self.request.status = self.request.status or 499
            self._log(self.request)

    def _log(self, request):
        """The request is over: logged, its cleanup run (limit_conn's count given back)."""
        self.logged = True
        self.app.log_request(request)
        if getattr(request, "cleanup", None) is not None:
            http1.run_cleanup(request)
        request.connection = None     # no cycle through the connection's streams

    def shutdown(self, graceful: bool):
        self.conn.shutdown(graceful)


def split_block(conn, fields):
    """An h2 header block split as Http2Stream.start_split takes it: (method, path,
    authority, scheme, fields, bad name, odd names); None once the connection failed (a
    field over the limit). The compiled session splits in C the same way."""
    method = path = authority = scheme = b""
    headers = []
    odd_names = False
    for name, value in fields:
        if len(value) > conn.field_limit:
            conn.fail(ErrorCodes.ENHANCE_YOUR_CALM)
            return None
        pseudo = name[:1] == b":"
        first = 1 if pseudo else 0      # nginx checks a pseudo-header's name after the ":"
        if not _PLAIN_NAME(name, first):
            if _BAD_NAME(name, first):
                return b"", b"", b"", b"", [], True, False
            if not pseudo:
                odd_names = True
        if pseudo:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
        else:
            headers.append((name, name, value))
    return method, path, authority, scheme, headers, False, odd_names


_DATE_FIELDS: dict = {}


def _server_and_date(tokens: bool) -> list:
    """Server and Date as fields, parsed once per second."""
    lines = server_and_date.lines(tokens)
    fields = _DATE_FIELDS.get(lines)
    if fields is None:
        if len(_DATE_FIELDS) > 4:
            _DATE_FIELDS.clear()
        fields = _DATE_FIELDS[lines] = []
        _fields(fields, lines)
    return fields


def _fields(out: list, lines: bytes) -> None:
    """HTTP/1.1 header lines as HTTP/2 fields: lowercase names, no connection fields."""
    for line in lines.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name not in CONNECTION_FIELDS:
            out.append((name, value.strip()))


Http2StreamPy = Http2Stream
if protocol.IMPLEMENTATION == "cython":
    from _fastpath.proxyproto import Http2Stream  # noqa: E402,F811
