# Request streams of a multiplexed connection as client connections: StreamConnection, and
# Http2Stream, the compiled twin of gateway/http/http2_stream.py's (its specification).
# Included by proxyproto.pyx because both stand on ClientConnection's C fields and methods.
#
# The head a handler writes becomes the fields of a HEADERS frame, its body DATA frames queued
# in ``pending`` and handed to the session (H2Session or h2) as the windows allow; the stream
# is its own transport (through a weak proxy) so that pausing it holds back WINDOW_UPDATEs.

import weakref

from h2.exceptions import ProtocolError as H2ProtocolError

from gateway.http import parser as http_parser

cdef enum:
    # A stream's handler is paused once this much response body waits beyond its window.
    STREAM_PENDING_LIMIT = 64 * 1024
    # RFC 9113 error codes.
    H2_NO_ERROR = 0
    H2_PROTOCOL_ERROR = 1
    H2_INTERNAL_ERROR = 2

# Connection-specific fields (RFC 9113 8.2.2): never sent in an HTTP/2 response.
cdef frozenset _CONNECTION_FIELDS = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
cdef dict _date_fields = {}     # Server and Date lines -> them as fields
cdef list _status_values = [None] * 1000


cdef _h2_fields(list out, bytes lines):
    """HTTP/1.1 header lines as HTTP/2 fields: lowercase names, no connection fields."""
    for line in lines.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name not in _CONNECTION_FIELDS:
            out.append((name, value.strip()))


cdef list _h2_server_and_date(bint tokens):
    """Server and Date as fields, split once per second."""
    lines = _server_and_date(tokens)
    fields = _date_fields.get(lines)
    if fields is None:
        if len(_date_fields) > 4:
            _date_fields.clear()
        fields = []
        _h2_fields(fields, lines)
        _date_fields[lines] = fields
    return fields


cdef bytes _status_value(int status):
    value = _status_values[status] if 0 <= status < 1000 else None
    if value is None:
        value = b"%d" % status
        if 0 <= status < 1000:
            _status_values[status] = value
    return value


cdef class StreamConnection(ClientConnection):
    """One request stream of a multiplexed client connection (HTTP/2), as a ClientConnection.

    The subclass that speaks the protocol (gateway/http/http2_stream.py's Http2Stream) gives
    send_head, send_body, send_raw, write_now, finish_response and close in Python; what the
    compiled path writes as HTTP/1.1 bytes is handed to those instead, so a stream's request
    is routed and proxied here, by _dispatch and ProxyExchange, as a connection's is.
    connection.py's twin is http2_stream.StreamConnectionPy.
    """

    cdef _write(self, data):
        self.write_now(data)

    cdef _send_parts(self, int status, list parts, add_headers, body, own=None):
        self.send_head(status, b"".join([part for part in parts[2:] if part]), add_headers,
                       body, own)

    cdef _send_relayed_head(self, int status, bytes fields, bytes extra, add_headers,
                            const char* tail, Py_ssize_t tail_size, object own):
        body = PyBytes_FromStringAndSize(tail, tail_size) if tail_size else b""
        self.send_head(status, fields + extra if extra else fields, add_headers, body, own)

    def dispatch_request(self, Request request):
        """Route the stream's request and start answering it (WorkerApp.dispatch's work)."""
        if self.own_dispatch:
            self._dispatch(request, _server_info(request.server))
        else:
            self.app.dispatch(self, request)

    def reject(self, exc):
        """Answer a request that cannot be taken with exc's status (_reject)."""
        self._reject(exc)

    def arm(self, double timeout, int status):
        """Set the stream's deadline: ``status`` answers it, 0 closes (_arm)."""
        self._arm(timeout, status)

    def render_add_headers(self, int status, add_headers):
        """The add_header lines that apply to ``status``."""
        return self._render_add_headers(status, add_headers)


cdef class Http2Stream(StreamConnection):
    """One request stream, seen by handlers as a client connection with one request."""

    cdef public object conn
    cdef public int stream_id
    cdef public object head         # the response's fields until HEADERS is handed over
    cdef public list pending
    cdef public Py_ssize_t pending_size
    cdef public bint ending, ended, paused, reading_held, logged
    cdef public long long unacked
    cdef public bint dechunking     # add_trailer: the body comes in our chunks (trailers.py)
    cdef public object trailers     # add_trailer's fields, sent as the last HEADERS frame
    cdef object __weakref__

    def __init__(self, conn, int stream_id):
        self._init(conn.app, conn.listen_key)
        self.conn = conn
        self.stream_id = stream_id
        self.transport = weakref.proxy(self)    # not self: no cycle for the collector
        self.state = WAIT            # a stream carries one request: no head to wait for
        self.keep_alive = True
        self.requests_served = 1
        self.id = conn.id
        self.remote_addr = conn.remote_addr
        self.remote_port = conn.remote_port
        self.server_addr = conn.server_addr
        self.server_port = conn.server_port
        self.ssl_object = conn.ssl_object
        self.pending = []

    # The request --------------------------------------------------------

    def start(self, fields, bint ended, long long block_length):
        """Build the Request from the header block (``block_length`` bytes as it came) and
        hand it to the app."""
        from gateway.http.http2_stream import split_block
        split = split_block(self.conn, fields)
        if split is not None:
            self.start_split(split[0], split[1], split[2], split[3], split[4], block_length,
                             ended, split[5], split[6])

    def start_split(self, bytes method, bytes path, bytes authority, bytes scheme, list headers,
                    long long size, bint ended, bint bad_name, bint odd_names):
        """start() once the block is split into pseudo-headers and fields."""
        app = self.app
        conn = self.conn
        cdef Request request
        if bad_name:
            # nginx: "client sent invalid header name", RST_STREAM PROTOCOL_ERROR.
            conn.h2.reset_stream(self.stream_id, H2_PROTOCOL_ERROR)
            self.state = CLOSED
            conn.stream_done(self)
            return
        try:
            if not method or not scheme or method == b"CONNECT" or not path:
                raise BadRequest("client sent no :method, :scheme or :path header")
            uri, args, request_uri = http_parser.split_target(path)
        except HttpError as exc:
            self.request = self._bare_request()
            self._reject(exc)
            return
        request = Request.__new__(Request)
        request._init(method.decode("latin-1"), request_uri, uri, args, 20, headers)
        request.start_time = self._now()
        request.request_length = size
        request.remote_addr = self.remote_addr
        request.remote_port = self.remote_port
        request.server_addr = self.server_addr
        request.server_port = self.server_port
        request.connection_id = self.id
        request.connection_requests = conn.requests_served
        request.connection = conn      # $connection_time, $tcpinfo_* ($pipe stays ".")
        if self.ssl_object is not None:
            request.scheme = "https"
            request.ssl_object = self.ssl_object
        self.request = request
        host_field = header_value(headers, b"host", False)
        host = authority.decode("latin-1") if authority else host_field
        if authority and host_field is None:
            # nginx (before 1.25) gives :authority to the request as its Host header.
            headers.insert(0, (b"host", b"host", authority))
        try:
            if host is not None:
                request.host = _host_name(host)
        except HttpError as exc:
            self._reject(exc)
            return
        server = app.server_router.select(self.listen_key, request.host or None)
        request.server = server
        request.server_name = server.server_names[0] if server.server_names else ""
        if odd_names:
            request.headers = header_names.screen_http2(request, bool(authority), conn.server,
                                                        server)
        cdef _ServerInfo sinfo = _server_info(server)
        if sinfo.verify_client and self.ssl_object is not None and self.certificate_refused():
            return
        if sinfo.real_ip is not None:
            sinfo.real_ip.apply(request)
        cdef BodyReader body
        if not ended:
            length = header_value(request.headers, b"content-length", False)
            # Without content-length the length is known at END_STREAM: "chunked" makes the
            # proxy read it whole and send a Content-Length, as nginx does.
            try:
                body = BodyReader("chunked", 0) if length is None \
                    else BodyReader("length", int(length))
            except (ValueError, OverflowError):
                self._reject(BadRequest("client sent invalid \"Content-Length\" header"))
                return
            body.done = False       # END_STREAM ends it (body_end), whatever the length
            self.body = body
            self.state = BODY
        try:
            if self.own_dispatch:
                self._dispatch(request, sinfo)
            else:
                app.dispatch(self, request)
        except HttpError as exc:
            self._reject(exc)

    cdef Request _bare_request(self):
        cdef Request request = Request.__new__(Request)
        request._init("", "", "", "", 20, [])
        request.remote_addr = self.remote_addr
        request.server = self.conn.server
        request.start_time = self._now()
        return request

    def body_data(self, bytes data, long long flow_length):
        cdef BodyReader body = self.body
        body.received += len(data)
        self.request.request_length += len(data)     # nginx counts the body as it is read
        if body.framing == F_LENGTH:
            body.remaining = max(body.remaining - len(data), 0)
        if body.limit and body.received > body.limit and not self.response_started:
            self._reject(PayloadTooLarge(
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
            self._arm(body.timeout, 408)

    def body_end(self):
        cdef BodyReader body = self.body
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

    def is_closing(self):
        return self.state == CLOSED

    def get_write_buffer_size(self):
        return self.pending_size

    # Writing the response ------------------------------------------------

    cpdef send_head(self, int status, header_lines, add_headers=None, body=b"", own=None):
        cdef Request request = self.request
        cdef Py_ssize_t size = 0
        request.status = status
        self.response_started = True
        cdef list ours = _h2_server_and_date(self._server_tokens(request))
        cdef list head = [(b":status", _status_value(status))]
        if own is None:
            head.extend(ours)
        else:       # the upstream's Server or Date replaces ours
            for name, value in ours:
                if (name == b"server" and own[0]) or (name == b"date" and own[1]):
                    head.append((name, value))
        _h2_fields(head, header_lines)
        if add_headers:
            _h2_fields(head, self._render_add_headers(status, add_headers))
        self.head = head
        for name, value in head:
            size += len(name) + len(value) + 4
        request.bytes_sent += size
        if body:
            self.send_body(body)
        else:
            self.conn.schedule_flush(self)

    cpdef send_body(self, data):
        cdef Request request = self.request
        request.body_bytes_sent += len(data)
        request.bytes_sent += len(data)
        if self.dechunking:
            data = self._dechunk(data)
        if self.pacer is None:
            self._queue(data)
        else:
            self.pacer.write(data)

    def write_now(self, data):
        """Queue DATA now, past the pacer (limit_rate paces each stream)."""
        self._queue(data)

    cdef _write(self, data):
        self._queue(data)

    cdef _queue(self, data):
        if self.state == CLOSED or not data:
            return
        self.pending.append(data)
        self.pending_size += len(data)
        self.conn.schedule_flush(self)
        if not self.paused and self.pending_size > STREAM_PENDING_LIMIT:
            self.pause()

    def expect_trailers(self):
        """add_trailer applies: the body comes framed in our chunks, the last one with the
        fields; they go as a HEADERS frame with END_STREAM after the last DATA frame."""
        self.dechunking = True

    cdef bytes _dechunk(self, data):
        # Whole chunks only: trailers.chunk() and last_chunk() make each piece given here.
        cdef list out = []
        cdef Py_ssize_t size_end, size, start
        while data:
            size_end = data.index(b"\r\n")
            size = int(data[:size_end], 16)
            if size == 0:
                fields = []
                _h2_fields(fields, bytes(data[size_end + 2:len(data) - 2]))
                self.trailers = fields or None
                self.dechunking = False
                break
            start = size_end + 2
            out.append(data[start:start + size])
            data = data[start + size + 2:]
        return b"".join(out)

    cpdef send_raw(self, data):
        """An HTTP/1.1 interim response or last chunk: only add_trailer's last chunk counts."""
        if self.dechunking:
            data = self._dechunk(data)
            if self.pacer is None:
                self._queue(data)
            else:
                self.pacer.write(data)

    cpdef finish_response(self):
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

    cdef _log(self, Request request):
        """The request is over: logged, its cleanup run (limit_conn's count given back)."""
        cdef _PlanInfo where = self._where_info(request)
        self.logged = True
        if where is not None:
            for file, fmt in where.access_logs:
                file.write(fmt.render(request))
            if where.meter is not None:
                where.meter.record(request)
        if request.cleanup is not None:
            _run_cleanup(request)
        request.connection = None     # no cycle through the connection's streams

    cpdef close(self):
        """A handler cuts the answer short: the stream is reset, the connection stays."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.pending = []
        self.pending_size = 0
        if not self.ended:
            self.ended = True
            try:
                self.conn.h2.reset_stream(self.stream_id, H2_INTERNAL_ERROR)
            except H2ProtocolError:
                pass
            self.conn.schedule_flush(self)
        self.conn.stream_done(self)

    def flush(self):
        """Send what the windows allow; END_STREAM once the handler finished."""
        if self.ended or self.state == CLOSED:
            return
        conn = self.conn
        h2c = conn.h2
        cdef int stream_id = self.stream_id
        cdef list pending
        cdef Py_ssize_t window, size
        cdef bint last
        try:
            if self.head is not None:
                last = self.ending and not self.pending and self.trailers is None
                h2c.send_headers(stream_id, self.head, end_stream=last)
                self.head = None
                if last:
                    self._ended()
                    return
            pending = self.pending
            while pending:
                window = h2c.local_flow_control_window(stream_id)
                if window <= 0 or conn.writing_paused:
                    break
                if len(pending) > 1:
                    pending = self.pending = [b"".join(pending)]
                data = pending[0]
                size = h2c.max_outbound_frame_size
                if window < size:
                    size = window
                if len(data) > size:
                    pending[0] = data[size:]
                    data = data[:size]
                else:
                    del pending[0]
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
                        h2c.reset_stream(stream_id, H2_INTERNAL_ERROR)
                    self._ended()
                    return
                if self.paused and not conn.writing_paused:
                    self.paused = self.writing_paused = False
                    if self.handler is not None and \
                            (self.pacer is None or not self.pacer.delayed):
                        self.handler.client_write_resumed()
        except H2ProtocolError:     # reset meanwhile, or closed
            self.state = CLOSED
            self.ended = True
            conn.stream_done(self)

    cdef _ended(self):
        self.ended = True
        self.state = CLOSED
        self.conn.stream_done(self)
        cdef BodyReader body = self.body
        if body is not None and not body.done and \
                not (body.framing == F_LENGTH and body.remaining == 0):
            # The answer is complete before the request body: RST_STREAM NO_ERROR (RFC 9113
            # 8.1), unless every byte the content-length announced is in.
            try:
                self.conn.h2.reset_stream(self.stream_id, H2_NO_ERROR)
            except H2ProtocolError:
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

    def shutdown(self, bint graceful):
        self.conn.shutdown(graceful)
