# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of gateway.observe.accesslog.LogFormat's generated renderer.

LogFormat turns a log_format into a list of ops (see LogFormat.ops); this renders them into one
C buffer: numbers, the cached time strings and request headers (escaped byte by byte, as
ngx_http_log_escape and ngx_escape_json do) without a Python call; other variables through their
getter and the Python escaper, exactly as the twin does.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf

from _fastpath.numtext cimport decimal, fixed3
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from libc.time cimport time as c_time, time_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

# Op kinds (LogFormat.ops).
DEF LIT = 0
DEF GENERIC = 1
DEF STATUS = 2
DEF INT_ATTR = 3
DEF CLOCK = 4
DEF HEADER = 5
DEF REQUEST_TIME = 6
DEF STR_ATTR = 7
DEF REQUEST_LINE = 8
DEF REMOTE_USER = 9
DEF HOST = 10
# Escapes.
DEF ESC_DEFAULT = 0
DEF ESC_JSON = 1
DEF ESC_NONE = 2

cdef const char* HEX = b"0123456789ABCDEF"
cdef const char* HEX_LOWER = b"0123456789abcdef"


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef inline int _grow(Buf* b, Py_ssize_t more) except -1:
    cdef Py_ssize_t want = b.size + more
    cdef char* data
    if want > b.cap:
        while b.cap < want:
            b.cap *= 2
        data = <char*>realloc(b.data, b.cap)
        if data == NULL:
            raise MemoryError()
        b.data = data
    return 0


cdef inline int _put(Buf* b, const char* s, Py_ssize_t n) except -1:
    _grow(b, n)
    memcpy(b.data + b.size, s, n)
    b.size += n
    return 0


cdef int _put_escaped(Buf* b, const unsigned char* s, Py_ssize_t n, int escape) except -1:
    """s[:n] escaped as nginx's log module does (escape: ESC_DEFAULT, ESC_JSON or ESC_NONE)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    _grow(b, n * 6)
    cdef char* w = b.data + b.size
    for i in range(n):
        c = s[i]
        if escape == ESC_DEFAULT:
            if c < 0x20 or c == 0x22 or c == 0x5c or c >= 0x7f:
                w[0] = 0x5c; w[1] = 0x78; w[2] = HEX[c >> 4]; w[3] = HEX[c & 15]
                w += 4
                continue
        elif escape == ESC_JSON:
            if c == 0x22 or c == 0x5c:
                w[0] = 0x5c; w[1] = c
                w += 2
                continue
            if c < 0x20:
                w[0] = 0x5c
                if c == 0x0a:
                    w[1] = 0x6e
                elif c == 0x0d:
                    w[1] = 0x72
                elif c == 0x09:
                    w[1] = 0x74
                elif c == 0x08:
                    w[1] = 0x62
                elif c == 0x0c:
                    w[1] = 0x66
                else:
                    w[1] = 0x75; w[2] = 0x30; w[3] = 0x30
                    w[4] = HEX_LOWER[c >> 4]; w[5] = HEX_LOWER[c & 15]
                    w += 6
                    continue
                w += 2
                continue
        w[0] = c
        w += 1
    b.size = w - b.data
    return 0


cdef inline int _put_int(Buf* b, long long value) except -1:
    cdef char digits[24]
    return _put(b, digits, decimal(value, digits))


cdef int _put_text(Buf* b, str text, int escape) except -1:
    """A str value's bytes (UTF-8, raw bytes kept as surrogate escapes), escaped."""
    cdef bytes raw = text.encode("ascii") if text.isascii() else text.encode("utf-8", "surrogateescape")
    return _put_escaped(b, <const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), escape)


cdef bint _has_header(request, bytes key):
    cdef tuple item
    for item in request.headers:
        if <bytes>item[0] == key:
            return True
    return False


cdef class LineBuffer:
    """The lines of one access log file waiting to be written: accesslog.LineBuffer in C (the
    log file class derives from it, so every logged request's write is one C call)."""

    cdef public list pending
    cdef public Py_ssize_t pending_size, limit
    cdef public double flush_after, oldest

    def __cinit__(self, *args, **kwargs):
        self.pending = []

    cpdef write(self, bytes line):
        cdef timespec ts
        if not self.pending and self.flush_after:
            clock_gettime(CLOCK_MONOTONIC, &ts)        # time.monotonic's clock
            self.oldest = ts.tv_sec + ts.tv_nsec * 1e-9
        self.pending.append(line)
        self.pending_size += PyBytes_GET_SIZE(line)
        if self.pending_size >= self.limit:
            self.flush()

    def flush(self):
        raise NotImplementedError


cdef class CompiledFormat:
    """LogFormat's renderer over its ops, in C."""

    cdef list ops
    cdef object clock_local, clock_iso
    cdef time_t second
    cdef bytes local, iso

    def __init__(self, list ops):
        self.ops = ops
        self.second = -1
        self.local = self.iso = b""

    cdef bytes _clock(self, str which, getter):
        cdef time_t now = c_time(NULL)
        if now != self.second:
            self.second = now
            self.local = self.iso = None
        if which == "time_local":
            if self.local is None:
                self.local = (<str>getter(None)).encode("ascii")
            return self.local
        if self.iso is None:
            self.iso = (<str>getter(None)).encode("ascii")
        return self.iso

    def render(self, request):
        cdef Buf b
        b.cap = 512
        b.size = 0
        b.data = <char*>malloc(b.cap)
        if b.data == NULL:
            raise MemoryError()
        try:
            self._render(&b, request)
            return PyBytes_FromStringAndSize(b.data, b.size)
        finally:
            free(b.data)

    cdef _render(self, Buf* b, request):
        cdef tuple op
        cdef int kind
        cdef char num[48]
        cdef int n
        cdef timespec ts
        cdef double seconds
        cdef long status
        cdef bytes raw
        for op in self.ops:
            kind = op[0]
            if kind == LIT:
                raw = op[1]
                _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            elif kind == STATUS:
                status = <long>request.status
                if 0 <= status < 100:
                    n = snprintf(num, 48, "%03ld", status)      # nginx pads to three digits
                    _put(b, num, n)
                else:
                    _put_int(b, status)
            elif kind == INT_ATTR:
                _put_int(b, <long long>getattr(request, op[1]))
            elif kind == CLOCK:
                raw = self._clock(op[1], op[2])
                _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            elif kind == REQUEST_TIME:
                clock_gettime(CLOCK_MONOTONIC, &ts)
                seconds = ts.tv_sec + ts.tv_nsec * 1e-9 - <double>request.start_time
                seconds = seconds if seconds > 0 else 0.0
                n = fixed3(seconds, num)
                if n < 0:
                    raw = f"{seconds:.3f}".encode("ascii")
                    _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
                else:
                    _put(b, num, n)
            elif kind == HEADER:
                self._header(b, request, op)
            elif kind == REQUEST_LINE:
                # $request: "METHOD URI PROTOCOL", escaped as one value (spaces never are).
                _put_text(b, request.method, op[1])
                _put(b, " ", 1)
                _put_text(b, request.request_uri, op[1])
                _put(b, " ", 1)
                _put_text(b, request.protocol, op[1])
            elif kind == HOST:
                # $host: the request's host, else the server's name (variables._host); escaped.
                value = request.host or request.server_name
                if value:
                    _put_text(b, <str>value, <int>op[1])
                else:
                    raw = op[2]
                    _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            elif kind == REMOTE_USER and not _has_header(request, b"authorization"):
                raw = op[4]
                _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            elif kind == STR_ATTR:
                # op: (STR_ATTR, attribute, empty, escape or -1 for text nginx never escapes)
                value = getattr(request, op[1])
                if not value:
                    raw = op[2]
                elif <int>op[3] >= 0:
                    _put_text(b, <str>value, <int>op[3])
                    continue
                elif (<str>value).isascii():
                    raw = (<str>value).encode("ascii")
                else:
                    raw = (<str>value).encode("utf-8", "surrogateescape")
                _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            else:
                self._generic(b, request, op)

    cdef _header(self, Buf* b, request, tuple op):
        # op: (HEADER, lower name, escape, empty, cookie)
        cdef bytes key = op[1]
        cdef object found = None
        cdef tuple item
        if getattr(request, "underscored_names", False):
            # A kept "X_Y" field is $http_x_y too (variables._http, as nginx compares names).
            for item in request.headers:
                if (<bytes>item[0]).replace(b"_", b"-") == key:
                    found = item[2] if found is None else \
                        found + (b"; " if op[4] else b", ") + item[2]
        else:
            for item in request.headers:
                if <bytes>item[0] == key:
                    if found is None:
                        found = item[2]
                    else:
                        found = found + (b"; " if op[4] else b", ") + item[2]
        if not found:
            raw = op[3]
            _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
            return
        raw = found
        _put_escaped(b, <const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw),
                     op[2])

    cdef _generic(self, Buf* b, request, tuple op):
        # op: (GENERIC, getter, escaper or None, header, empty)
        value = op[1](request)
        cdef bytes raw
        if not value:
            raw = op[4]
        else:
            escaper = op[2]
            text = value if escaper is None else escaper(value, op[3])
            try:
                raw = (<str>text).encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raw = (<str>text).encode("utf-8", "replace")
        _put(b, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))


def format_seconds(double seconds):
    """"%.3f" % seconds as the compiled log path writes it (numtext.fixed3), for its tests."""
    cdef char out[48]
    cdef int n = fixed3(seconds, out)
    return out[:n].decode("ascii") if n >= 0 else f"{seconds:.3f}"


def format_integer(long long value):
    """value in decimal as the compiled log path writes it (numtext.decimal), for its tests."""
    cdef char out[24]
    return out[:decimal(value, out)].decode("ascii")
