# cython: language_level=3
"""The HTTP/2 server session on libnghttp2: the compiled twin of ``h2`` under Http2Connection.

nghttp2 parses frames, decodes HPACK, keeps stream states and both flow-control windows and
answers SETTINGS and PING; its callbacks (``cdef`` functions below) gather a request's header
block into one list and queue one event per request head, body chunk, reset or window update,
so Python is entered once per event, not per frame or per field.  The methods Http2Stream calls
(``send_headers``, ``send_data``, ``end_stream``, ``reset_stream``,
``local_flow_control_window``, ``acknowledge_received_data``) have h2's names and meaning, so
the stream adapter serves both sessions unchanged (gateway/http/http2.py selects one).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memcpy

from _fastpath.nghttp2 cimport *

# Http2Stream catches h2's ProtocolError for "the stream is gone": raised here for the same.
from h2.exceptions import ProtocolError

# Event kinds, the first item of each tuple receive() returns.
# (REQUEST, stream_id, [(name, name, value), ...], ended,
#  (method, path, authority, scheme, block_length, bad_name, odd_names)): the block split as
#  Http2Stream.start_split takes it (fields but the pseudo-headers, a Request's triples).
REQUEST = 1
DATA = 2           # (DATA, stream_id, data, flow_controlled_length)
ENDED = 3          # (ENDED, stream_id): END_STREAM after a body
CLOSED = 4         # (CLOSED, stream_id, error_code): reset by the client or closed by nghttp2
WINDOW = 5         # (WINDOW, stream_id): WINDOW_UPDATE, 0 for the connection
SETTINGS = 6       # (SETTINGS,): the client's SETTINGS (its initial window may have changed)
GOAWAY = 7         # (GOAWAY,): the client opens no more streams

MAX_WINDOW = 2 ** 31 - 1
# Our SETTINGS take effect at once, as in nginx: nghttp2 is told the client acknowledged them
# right after the client's own first SETTINGS, and the client's real ACK is taken out.
cdef bytes SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
cdef enum:
    SCAN_PREFACE, SCAN_FIRST, SCAN_ACK, SCAN_DONE
HEADER_ENTRY_OVERHEAD = 32     # RFC 7541 4.1, as hpack counts a header list's size

# Field-name bytes as nginx judges them (ngx_http_v2_validate_header): NAME_ODD for those of
# a name it calls invalid (underscores_in_headers, ignore_invalid_headers decide), NAME_BAD
# for those that reset the stream; 0 for lowercase letters, digits and "-".
cdef enum:
    NAME_ODD = 1
    NAME_BAD = 2
cdef unsigned char NAME_KIND[256]

cdef void _init_name_kinds():
    cdef int c
    for c in range(256):
        if c == 45 or 48 <= c <= 57 or 97 <= c <= 122:
            NAME_KIND[c] = 0
        elif c <= 0x20 or c == 0x7f or c == 58 or 65 <= c <= 90:
            NAME_KIND[c] = NAME_BAD
        else:
            NAME_KIND[c] = NAME_ODD

_init_name_kinds()


class SessionError(Exception):
    """A frame the session refused as a connection error we answer ourselves."""

    def __init__(self, message, error_code, last_stream_id):
        super().__init__(message)
        self.error_code = error_code
        self.last_stream_id = last_stream_id


cdef class _Outgoing:
    """A stream's response body waiting for nghttp2's data read callback."""
    cdef bytearray buf
    cdef Py_ssize_t pos
    cdef bint eof, deferred
    cdef list trailers      # fields to end the stream with once the body is framed, or None

    def __cinit__(self):
        self.buf = bytearray()


cdef class _Head:
    """A header block being received: its fields, its size so far, its cookie crumbs."""
    cdef list fields
    cdef list cookies
    cdef Py_ssize_t size           # as hpack counts a header list (the limit)
    cdef bytes method, path, authority, scheme
    cdef bint bad_name             # a field name nginx resets the stream for (NAME_BAD)
    cdef bint odd_names            # a field name of other bytes than a-z, 0-9 and "-"


cdef class H2Session:
    """One client connection's HTTP/2 state in nghttp2 (server side)."""
    cdef nghttp2_session *session
    cdef list events
    cdef dict heads            # stream id -> _Head while its block arrives
    cdef dict outgoing         # stream id -> _Outgoing once a body is submitted
    cdef Py_ssize_t queued     # bytes in every _Outgoing, not yet framed
    cdef Py_ssize_t list_limit, field_limit
    cdef int fail_code
    cdef int32_t fail_stream
    cdef bint sending
    cdef bytes settings_patch
    cdef int scan                 # SCAN_*: where the ACK stand-in is in the input
    cdef Py_ssize_t scan_pass     # bytes of the preface or of a frame still to pass
    cdef bytes scan_head          # a frame header cut by the end of a read

    def __cinit__(self, int max_streams, Py_ssize_t list_limit, Py_ssize_t field_limit,
                  int32_t initial_window, uint32_t max_frame):
        cdef nghttp2_session_callbacks *cbs
        cdef nghttp2_option *opt
        cdef nghttp2_settings_entry iv[2]
        self.events = []
        self.scan = SCAN_PREFACE
        self.scan_pass = 24
        self.scan_head = b""
        self.heads = {}
        self.outgoing = {}
        self.list_limit = list_limit
        self.field_limit = field_limit
        nghttp2_session_callbacks_new(&cbs)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, _on_frame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, _on_begin_headers)
        nghttp2_session_callbacks_set_on_header_callback(cbs, _on_header)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, _on_data)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, _on_close)
        nghttp2_option_new(&opt)
        # WINDOW_UPDATEs wait for the stream's reader (request body flow control), and the
        # request is checked by Http2Stream.start as nginx checks it (RFC 9113 8.1.1: a stream
        # error, a 400 for missing pseudo-headers), the same code for both sessions.
        nghttp2_option_set_no_auto_window_update(opt, 1)
        nghttp2_option_set_no_http_messaging(opt, 1)
        rc = nghttp2_session_server_new2(&self.session, cbs, <void *>self, opt)
        nghttp2_option_del(opt)
        nghttp2_session_callbacks_del(cbs)
        if rc != 0:
            raise MemoryError(nghttp2_strerror(rc).decode())
        iv[0].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[0].value = initial_window
        iv[1].settings_id = NGHTTP2_SETTINGS_MAX_FRAME_SIZE
        iv[1].value = max_frame
        nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 2)
        nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0, MAX_WINDOW)
        # SETTINGS_MAX_CONCURRENT_STREAMS is written into the first SETTINGS frame by hand:
        # given to nghttp2 it would make a stream over the limit a connection error, where
        # nginx refuses the stream alone (RST_STREAM REFUSED_STREAM, Http2Connection's job).
        self.settings_patch = (b"\x00\x03" + max_streams.to_bytes(4, "big")) if max_streams >= 0 else b""

    def __dealloc__(self):
        if self.session is not NULL:
            nghttp2_session_del(self.session)
            self.session = NULL

    # Input ----------------------------------------------------------------

    def receive(self, bytes data):
        """Feed the client's bytes; the events they made (tuples, see the kinds above)."""
        if self.scan != SCAN_DONE:
            data = self._scan(data)
        cdef ssize_t rc = nghttp2_session_mem_recv(
            self.session, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        if self.fail_code:
            raise SessionError("header list over the limits", self.fail_code, self.fail_stream)
        if rc < 0:
            raise SessionError(nghttp2_strerror(<int>rc).decode(), 1,
                               nghttp2_session_get_last_proc_stream_id(self.session))
        events, self.events = self.events, []
        return events

    cdef bytes _scan(self, bytes data):
        """The first frames: the ACK stand-in put after the client's SETTINGS, its ACK out."""
        cdef list out = []
        cdef bytes buf = self.scan_head + data
        cdef Py_ssize_t pos = 0, end = len(buf), n
        self.scan_head = b""
        while pos < end and self.scan != SCAN_DONE:
            if self.scan_pass:
                n = min(self.scan_pass, end - pos)
                out.append(buf[pos:pos + n])
                pos += n
                self.scan_pass -= n
                if not self.scan_pass:
                    if self.scan == SCAN_PREFACE:
                        self.scan = SCAN_FIRST
                    elif self.scan == SCAN_FIRST:
                        out.append(SETTINGS_ACK)
                        self.scan = SCAN_ACK
                continue
            if end - pos < 9:
                self.scan_head = buf[pos:]
                return b"".join(out)
            if self.scan == SCAN_ACK and buf[pos:pos + 9] == SETTINGS_ACK:
                pos += 9
                self.scan = SCAN_DONE
                break
            self.scan_pass = 9 + int.from_bytes(buf[pos:pos + 3], "big")
        out.append(buf[pos:])
        return b"".join(out)

    @property
    def done(self):
        """nghttp2 closed the session (a connection error it answered with GOAWAY)."""
        return not nghttp2_session_want_read(self.session) and \
            not nghttp2_session_want_write(self.session)

    # Output (h2's names) --------------------------------------------------

    def data_to_send(self):
        """The frames made so far, as bytes."""
        cdef const uint8_t *chunk
        cdef ssize_t n
        cdef list parts = []
        self.sending = True
        try:
            while True:
                n = nghttp2_session_mem_send(self.session, &chunk)
                if n <= 0:
                    break
                parts.append(PyBytes_FromStringAndSize(<const char *>chunk, n))
        finally:
            self.sending = False
        if not parts:
            return b""
        out = b"".join(parts)
        if self.settings_patch is not None:
            patch, self.settings_patch = self.settings_patch, None
            if patch and out[3] == NGHTTP2_SETTINGS:     # our preface SETTINGS comes first
                length = int.from_bytes(out[:3], "big")
                out = ((length + 6).to_bytes(3, "big") + out[3:9 + length] + patch
                       + out[9 + length:])
        return out

    @property
    def highest_inbound_stream_id(self):
        return nghttp2_session_get_last_proc_stream_id(self.session)

    @property
    def max_outbound_frame_size(self):
        return nghttp2_session_get_remote_settings(self.session, NGHTTP2_SETTINGS_MAX_FRAME_SIZE)

    def local_flow_control_window(self, int32_t stream_id):
        """What may still be sent on the stream: its and the connection's windows, less what
        is queued for them and not yet framed."""
        cdef int32_t stream = nghttp2_session_get_stream_remote_window_size(self.session, stream_id)
        if stream < 0:
            raise ProtocolError(f"stream {stream_id} is closed")
        cdef Py_ssize_t conn = nghttp2_session_get_remote_window_size(self.session) - self.queued
        cdef _Outgoing out = self.outgoing.get(stream_id)
        cdef Py_ssize_t own = stream
        if out is not None:
            own -= len(out.buf) - out.pos
        return own if own < conn else conn

    def send_headers(self, int32_t stream_id, list fields, end_stream=False):
        cdef _Outgoing out = self.outgoing.get(stream_id)
        if out is not None and end_stream:
            # Trailers: nghttp2 sends HEADERS ahead of queued DATA, so they wait for the
            # data read callback to frame the last byte (_read submits them then).
            if out.eof:
                raise ProtocolError(f"stream {stream_id} already ended")
            out.eof = True
            out.trailers = fields
            if out.deferred:
                out.deferred = False
                nghttp2_session_resume_data(self.session, stream_id)
            return
        rc = _submit_headers(self.session, stream_id, fields, end_stream, False)
        if rc != 0:
            raise ProtocolError(nghttp2_strerror(rc).decode())

    def send_data(self, int32_t stream_id, data, end_stream=False):
        cdef _Outgoing out = self.outgoing.get(stream_id)
        cdef nghttp2_data_provider provider
        if out is None:
            out = _Outgoing()
            out.buf += data
            out.eof = end_stream
            provider.source.ptr = <void *>out
            provider.read_callback = _read
            rc = nghttp2_submit_data(self.session, NGHTTP2_FLAG_END_STREAM, stream_id, &provider)
            if rc != 0:
                raise ProtocolError(nghttp2_strerror(rc).decode())
            self.outgoing[stream_id] = out
            self.queued += len(data)
            return
        if out.eof:
            raise ProtocolError(f"stream {stream_id} already ended")
        out.buf += data
        self.queued += len(data)
        if end_stream:
            out.eof = True
        if out.deferred:
            out.deferred = False
            nghttp2_session_resume_data(self.session, stream_id)

    def end_stream(self, int32_t stream_id):
        self.send_data(stream_id, b"", True)

    def reset_stream(self, int32_t stream_id, uint32_t error_code=0):
        rc = nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, error_code)
        if rc != 0:
            raise ProtocolError(nghttp2_strerror(rc).decode())

    def acknowledge_received_data(self, Py_ssize_t length, int32_t stream_id):
        """Give the client back ``length`` bytes of window (WINDOW_UPDATE when worth it)."""
        if nghttp2_session_consume(self.session, stream_id, length) != 0:
            nghttp2_session_consume_connection(self.session, length)


cdef int _submit_headers(nghttp2_session *session, int32_t stream_id, list fields,
                         bint end_stream, bint trailer) except? -1:
    """HEADERS with ``fields`` (bytes pairs), or the trailer ending a data provider's body."""
    cdef Py_ssize_t n = len(fields), i
    cdef nghttp2_nv *nva = <nghttp2_nv *>malloc(sizeof(nghttp2_nv) * (n or 1))
    cdef bytes name, value
    cdef int rc
    if nva is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            name, value = fields[i]
            nva[i].name = <uint8_t *>PyBytes_AS_STRING(name)
            nva[i].namelen = PyBytes_GET_SIZE(name)
            nva[i].value = <uint8_t *>PyBytes_AS_STRING(value)
            nva[i].valuelen = PyBytes_GET_SIZE(value)
            nva[i].flags = NGHTTP2_NV_FLAG_NONE
        if trailer:
            rc = nghttp2_submit_trailer(session, stream_id, nva, n)
        else:
            rc = nghttp2_submit_headers(session,
                                        NGHTTP2_FLAG_END_STREAM if end_stream else NGHTTP2_FLAG_NONE,
                                        stream_id, NULL, nva, n, NULL)
    finally:
        free(nva)     # nghttp2 copied the fields
    return rc


# nghttp2 callbacks: called inside mem_recv/mem_send, with the GIL held ---------------------

cdef int _on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame,
                           void *user) noexcept:
    cdef H2Session self = <H2Session>user
    cdef _Head head = _Head()
    head.fields = []
    head.size = 0
    head.method = head.path = head.authority = head.scheme = b""
    self.heads[frame.hd.stream_id] = head
    return 0


cdef int _on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                    void *user) noexcept:
    cdef H2Session self = <H2Session>user
    cdef _Head head = self.heads.get(frame.hd.stream_id)
    if head is None:
        return 0
    head.size += namelen + valuelen + HEADER_ENTRY_OVERHEAD
    if head.size > self.list_limit or <Py_ssize_t>valuelen > self.field_limit:
        # nginx's header_limit, or one field over a buffer (an HPACK bomb ends here):
        # GOAWAY ENHANCE_YOUR_CALM naming this stream.
        self.fail_code = NGHTTP2_ENHANCE_YOUR_CALM
        self.fail_stream = frame.hd.stream_id
        return NGHTTP2_ERR_CALLBACK_FAILURE
    cdef size_t i = 1 if namelen and name[0] == b':' else 0
    cdef unsigned char kind = 0
    while i < namelen:
        kind |= NAME_KIND[name[i]]
        i += 1
    if kind & NAME_BAD:
        head.bad_name = True
    if head.bad_name:
        return 0        # the stream is reset once the block is in (HPACK state kept)
    field_value = PyBytes_FromStringAndSize(<const char *>value, valuelen)
    if namelen and name[0] == b':':
        if namelen == 7 and memcmp(name, b":method", 7) == 0:
            head.method = field_value
        elif namelen == 5 and memcmp(name, b":path", 5) == 0:
            head.path = field_value
        elif namelen == 10 and memcmp(name, b":authority", 10) == 0:
            head.authority = field_value
        elif namelen == 7 and memcmp(name, b":scheme", 7) == 0:
            head.scheme = field_value
        return 0
    if namelen == 6 and memcmp(name, b"cookie", 6) == 0:
        # RFC 9113 8.2.3: crumbs joined with "; " (as h2 normalises and nginx joins them).
        if head.cookies is None:
            head.cookies = []
        head.cookies.append(field_value)
        return 0
    if kind:
        head.odd_names = True
    field_name = PyBytes_FromStringAndSize(<const char *>name, namelen)
    head.fields.append((field_name, field_name, field_value))
    return 0


cdef int _on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user) noexcept:
    cdef H2Session self = <H2Session>user
    cdef int32_t stream_id = frame.hd.stream_id
    cdef uint8_t kind = frame.hd.type
    cdef bint ended = frame.hd.flags & NGHTTP2_FLAG_END_STREAM
    cdef _Head head
    if kind == NGHTTP2_HEADERS:
        head = self.heads.pop(stream_id, None)
        if frame.headers.cat == NGHTTP2_HCAT_REQUEST and head is not None:
            if head.cookies is not None:
                cookie = b"; ".join(head.cookies)
                head.fields.append((b"cookie", b"cookie", cookie))
            # $request_length as nginx counts it: the header block as it came (no padding,
            # no priority fields; nghttp2's length has the CONTINUATION frames' in it); the
            # DATA bytes are added by the stream as they come.
            block = <Py_ssize_t>frame.hd.length - <Py_ssize_t>frame.headers.padlen
            if frame.hd.flags & NGHTTP2_FLAG_PRIORITY:
                block -= 5
            self.events.append((REQUEST, stream_id, head.fields, ended, (
                head.method, head.path, head.authority, head.scheme, block,
                head.bad_name, head.odd_names)))
        elif ended:
            self.events.append((ENDED, stream_id))      # after trailers
    elif kind == NGHTTP2_DATA:
        if ended:
            self.events.append((ENDED, stream_id))
    elif kind == NGHTTP2_WINDOW_UPDATE:
        self.events.append((WINDOW, stream_id))
    elif kind == NGHTTP2_SETTINGS:
        if not frame.hd.flags & NGHTTP2_FLAG_ACK:
            self.events.append((SETTINGS,))
    elif kind == NGHTTP2_GOAWAY:
        self.events.append((GOAWAY,))
    return 0


cdef int _on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                  size_t length, void *user) noexcept:
    cdef H2Session self = <H2Session>user
    self.events.append((DATA, stream_id,
                        PyBytes_FromStringAndSize(<const char *>data, length), length))
    return 0


cdef int _on_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                   void *user) noexcept:
    cdef H2Session self = <H2Session>user
    cdef _Outgoing out = self.outgoing.pop(stream_id, None)
    if out is not None:
        self.queued -= len(out.buf) - out.pos
    self.heads.pop(stream_id, None)
    if not self.sending:        # closed by what the client sent: its handler must know
        self.events.append((CLOSED, stream_id, error_code))
    return 0


cdef ssize_t _read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                   uint32_t *data_flags, nghttp2_data_source *source, void *user) noexcept:
    cdef H2Session self = <H2Session>user
    cdef _Outgoing out = <_Outgoing>source.ptr
    cdef Py_ssize_t available = len(out.buf) - out.pos
    cdef Py_ssize_t n = <Py_ssize_t>length if <Py_ssize_t>length < available else available
    if n:
        memcpy(buf, <char *>out.buf + out.pos, n)
        out.pos += n
        self.queued -= n
        if out.pos == len(out.buf):
            del out.buf[:]
            out.pos = 0
        elif out.pos > 65536:
            del out.buf[:out.pos]
            out.pos = 0
    if out.pos == len(out.buf):
        if out.eof:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
            if out.trailers is not None:
                # The trailer HEADERS frame carries END_STREAM (nghttp2's documented way).
                data_flags[0] |= NGHTTP2_DATA_FLAG_NO_END_STREAM
                try:
                    if _submit_headers(s, stream_id, out.trailers, True, True) != 0:
                        return NGHTTP2_ERR_CALLBACK_FAILURE
                except MemoryError:
                    return NGHTTP2_ERR_CALLBACK_FAILURE
                out.trailers = None
        elif not n:
            out.deferred = True
            return NGHTTP2_ERR_DEFERRED
    return n
