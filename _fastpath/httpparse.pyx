# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""HTTP/1.x heads, body framing and chunked bodies in C loops.

The specification is gateway/http/parser_py.py: every function here must
return the same values and raise the same exception classes for every input.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_DecodeUTF8, PyUnicode_New
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

from gateway.errors import (BadRequest, HeadersTooLarge, InvalidUpstreamResponse,
                            NotImplementedMethod, UriTooLong, VersionNotSupported)

__all__ = [
    "parse_request_head", "request_body_framing", "parse_response_head",
    "response_body_framing", "ChunkedDecoder", "split_target",
]

# Classes of PATH[], for split_target's fast path.
cdef enum:
    P_PLAIN = 0     # ASCII the normaliser copies as it is
    P_SLASH         # "/": look at what follows
    P_QUERY         # "?": the path ends
    P_NUL           # NUL: the end of the bytes, or a byte copied as it is
    P_OTHER         # "%", "#", non-ASCII: leave it to the normaliser

# Character classes, filled once at import.
cdef unsigned char TCHAR[256]       # RFC 9110 token characters
cdef unsigned char PLAIN_NAME[256]  # letters, digits, "-": the request field names nginx calls valid
cdef unsigned char NAME[256]        # request field-name bytes nginx takes: all but CTL, SP, DEL, ":"
cdef unsigned char TARGET[256]      # request-target bytes: VCHAR and obs-text
cdef unsigned char FIELD[256]       # field-value bytes: HTAB, SP, VCHAR, obs-text
cdef unsigned char HOST[256]        # reg-name bytes accepted in absolute-form
cdef signed char HEXVAL[256]
cdef unsigned char LOWER[256]       # bytes.lower(): ASCII letters only
cdef unsigned char OWS[256]         # SP and HTAB
cdef unsigned char PATH[256]        # split_target's fast path: P_* above

cdef void _init_tables():
    cdef int c
    for c in range(256):
        TCHAR[c] = 0
        PLAIN_NAME[c] = 1 if (c == 45 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else 0
        NAME[c] = 1 if (0x21 <= c <= 0x7e and c != 58) or c >= 0x80 else 0
        TARGET[c] = 1 if (0x21 <= c <= 0x7e or c >= 0x80) else 0
        FIELD[c] = 1 if (c == 9 or 0x20 <= c <= 0x7e or c >= 0x80) else 0
        HOST[c] = 0
        HEXVAL[c] = -1
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        OWS[c] = c == 32 or c == 9
        PATH[c] = P_PLAIN if c < 0x80 else P_OTHER
    PATH[0] = P_NUL
    PATH[47] = P_SLASH
    PATH[63] = P_QUERY
    PATH[37] = P_OTHER          # "%" and "#" need the normaliser
    PATH[35] = P_OTHER
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        TCHAR[c] = 1
    for c in b"._~!$&'()*+,;=%-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        HOST[c] = 1
    for c in range(10):
        HEXVAL[48 + c] = c
    for c in range(6):
        HEXVAL[97 + c] = 10 + c
        HEXVAL[65 + c] = 10 + c

_init_tables()

cdef int64_t INT64_MAX = 0x7fffffffffffffff
cdef enum:
    MAX_SIZE_LINE = 4096        # a chunk-size line with extensions
    MAX_TRAILER = 8192          # the whole trailer section
    MAX_SIZE_DIGITS = 16

# _request_field_span's answer for a valid line whose name nginx calls invalid.
cdef enum:
    ODD_NAME = 2

# Error codes, mapped to exceptions in _error() only.
cdef enum:
    E_REQUEST_LINE_LONG = 1
    E_HEADER_LINE_LONG
    E_HEAD_LARGE
    E_REQUEST_LINE
    E_VERSION_BAD
    E_VERSION_UNSUPPORTED
    E_ASTERISK
    E_HEADER_LINE
    E_UP_TOO_BIG
    E_UP_STATUS
    E_UP_HEADER


cdef object _error(int code):
    """The exception for one of the error codes above."""
    if code == E_REQUEST_LINE_LONG:
        return UriTooLong("request line too long")
    if code == E_HEADER_LINE_LONG:
        return HeadersTooLarge("header line too long")
    if code == E_HEAD_LARGE:
        return HeadersTooLarge("head too large")
    if code == E_REQUEST_LINE:
        return BadRequest("invalid request line")
    if code == E_VERSION_BAD:
        return BadRequest("invalid HTTP version")
    if code == E_VERSION_UNSUPPORTED:
        return VersionNotSupported("unsupported HTTP version")
    if code == E_ASTERISK:
        return BadRequest("asterisk-form target without OPTIONS")
    if code == E_HEADER_LINE:
        return BadRequest("invalid header line")
    if code == E_UP_TOO_BIG:
        return InvalidUpstreamResponse("upstream sent too big header")
    if code == E_UP_STATUS:
        return InvalidUpstreamResponse("upstream sent no valid HTTP/1.0 header")
    return InvalidUpstreamResponse("upstream sent invalid header")


# Methods that are common enough to hand out shared objects for.
cdef bytes M_GET = b"GET"
cdef bytes M_POST = b"POST"
cdef bytes M_HEAD = b"HEAD"
cdef bytes M_PUT = b"PUT"
cdef bytes M_DELETE = b"DELETE"
cdef bytes M_OPTIONS = b"OPTIONS"


# Field names common enough to hand out shared (lower_name, name) pairs for,
# grouped by length: most heads then cost one bytes object per field.
_COMMON_NAMES = (
    "Host", "User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Accept-Charset",
    "Connection", "Cookie", "Referer", "Content-Length", "Content-Type", "Transfer-Encoding",
    "Upgrade-Insecure-Requests", "Cache-Control", "Pragma", "Origin", "Authorization",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "X-Request-ID", "Sec-Fetch-Dest",
    "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "If-None-Match", "If-Modified-Since",
    "Range", "TE", "DNT", "Upgrade", "Expect", "Priority", "Date", "Server", "Location", "ETag",
    "Last-Modified", "Expires", "Vary", "Keep-Alive", "Set-Cookie", "Content-Encoding",
    "Accept-Ranges", "Age", "Sec-CH-UA", "Sec-CH-UA-Mobile", "Sec-CH-UA-Platform",
)


def _common_by_length():
    table = [[] for _ in range(32)]
    for text in _COMMON_NAMES:
        name = text.encode()
        lower = name.lower()
        table[len(name)].append((name, lower))
        table[len(name)].append((lower, lower))
    return tuple(tuple(pairs) for pairs in table)


cdef tuple COMMON = _common_by_length()


cdef inline Py_ssize_t _find_lf(const unsigned char* p, Py_ssize_t start, Py_ssize_t n):
    cdef const void* hit
    if start >= n:
        return -1
    hit = memchr(p + start, 10, <size_t>(n - start))
    if hit == NULL:
        return -1
    return <const unsigned char*>hit - p


cdef inline Py_ssize_t _line_end(const unsigned char* p, Py_ssize_t start, Py_ssize_t lf):
    if lf > start and p[lf - 1] == 13:
        return lf - 1
    return lf


cdef inline int _partial(const unsigned char* p, Py_ssize_t n, Py_ssize_t start,
                         Py_ssize_t max_line, Py_ssize_t max_head, int too_long):
    """0 if an unterminated line may still fit its limits, else the error code."""
    cdef Py_ssize_t size = n - start
    if size > 0 and p[n - 1] == 13:
        size -= 1
    if size > max_line:
        return too_long
    if n > max_head:
        return E_HEAD_LARGE
    return 0


cdef bytes _method(const unsigned char* p, Py_ssize_t size):
    if size == 3:
        if memcmp(p, b"GET", 3) == 0:
            return M_GET
        if memcmp(p, b"PUT", 3) == 0:
            return M_PUT
    elif size == 4:
        if memcmp(p, b"POST", 4) == 0:
            return M_POST
        if memcmp(p, b"HEAD", 4) == 0:
            return M_HEAD
    elif size == 6 and memcmp(p, b"DELETE", 6) == 0:
        return M_DELETE
    elif size == 7 and memcmp(p, b"OPTIONS", 7) == 0:
        return M_OPTIONS
    return PyBytes_FromStringAndSize(<const char*>p, size)


cdef inline bint _is_ws(unsigned char c):
    return c == 32 or c == 9


# Word-at-a-time helpers.  memcpy of 4 or 8 bytes compiles to one unaligned load.

cdef inline uint64_t _load8(const unsigned char* p) noexcept:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint64_t _load4(const unsigned char* p) noexcept:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline void _copy(void* dst, const void* src, Py_ssize_t n) noexcept:
    """memcpy(dst, src, n), without a call into libc for the short spans of heads and targets."""
    cdef unsigned char* d = <unsigned char*>dst
    cdef const unsigned char* s = <const unsigned char*>src
    if n > 16:
        memcpy(d, s, n)
    elif n >= 8:                # two 8-byte moves that may overlap
        memcpy(d, s, 8)
        memcpy(d + n - 8, s + n - 8, 8)
    elif n >= 4:
        memcpy(d, s, 4)
        memcpy(d + n - 4, s + n - 4, 4)
    else:
        while n > 0:
            n -= 1
            d[n] = s[n]


# Runs of common bytes 16 at a time, where SSE2 is there (every x86-64): from
# p[i] on, the index of the first byte that is not a field-value byte (HTAB,
# SP, VCHAR, obs-text; _value_run) or not a letter, digit or "-" (_name_run:
# most name bytes); or, once fewer than 16 bytes are left, where they stopped.
# Elsewhere they return i: the byte loops that follow them do all the work.
cdef extern from *:
    """
    #if defined(__SSE2__) && defined(__GNUC__)
    #include <emmintrin.h>
    static inline Py_ssize_t httpparse_value_run(const unsigned char* p, Py_ssize_t i,
                                                 Py_ssize_t n) {
        const __m128i sp = _mm_set1_epi8(0x20), tab = _mm_set1_epi8(9), del = _mm_set1_epi8(0x7f);
        while (i + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i*)(p + i));
            __m128i ok = _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(x, sp), x),   /* x >= 0x20 */
                                      _mm_cmpeq_epi8(x, tab));
            int bad = ~_mm_movemask_epi8(_mm_andnot_si128(_mm_cmpeq_epi8(x, del), ok)) & 0xffff;
            if (bad)
                return i + __builtin_ctz(bad);
            i += 16;
        }
        return i;
    }
    static inline Py_ssize_t httpparse_name_run(const unsigned char* p, Py_ssize_t i,
                                                Py_ssize_t n) {
        while (i + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i*)(p + i));
            __m128i l = _mm_or_si128(x, _mm_set1_epi8(0x20));    /* letters lowered */
            /* Signed compares: bytes from 0x80 on are below everything here. */
            __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                                           _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
            __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
                                          _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
            __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit),
                                      _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
            int other = ~_mm_movemask_epi8(ok) & 0xffff;
            if (other)
                return i + __builtin_ctz(other);
            i += 16;
        }
        return i;
    }
    #else
    #define httpparse_value_run(p, i, n) (i)
    #define httpparse_name_run(p, i, n) (i)
    #endif
    """
    Py_ssize_t _value_run "httpparse_value_run"(const unsigned char* p, Py_ssize_t i,
                                                Py_ssize_t n) noexcept nogil
    Py_ssize_t _name_run "httpparse_name_run"(const unsigned char* p, Py_ssize_t i,
                                              Py_ssize_t n) noexcept nogil


cdef inline void _key(const unsigned char* p, Py_ssize_t n, uint64_t fold,
                      uint64_t* head, uint64_t* tail) noexcept:
    """Two words that stand for the name p[:n] in comparisons with names of the same size.

    From 8 bytes on: its first and last 8 bytes (overlapping, and missing the
    middle from 17 bytes on); from 4: its first and last 4; below: its bytes;
    each byte ORed with the bytes of fold (0, or 0x20 each: see _name_key).
    """
    cdef uint64_t h = 0, t = 0
    cdef Py_ssize_t k
    if n >= 8:
        h = _load8(p) | fold
        t = _load8(p + n - 8) | fold
    elif n >= 4:
        h = _load4(p) | (fold & 0xffffffffULL)
        t = _load4(p + n - 4) | (fold & 0xffffffffULL)
    else:
        for k in range(n):
            h |= (<uint64_t>(p[k] | (fold & 0xff))) << (8 * k)
    head[0] = h
    tail[0] = t


cdef inline void _name_key(const unsigned char* p, Py_ssize_t n,
                           uint64_t* head, uint64_t* tail) noexcept:
    """_key(p, n) with 0x20 ORed into every byte, for comparing names without case.

    Among token characters that maps exactly the two cases of a letter
    together, and "^" with "~": so a field name (all token characters) and a
    name of token characters without capitals, "^" and "~" have equal keys and
    sizes exactly when name == field_name.lower(), up to the middle bytes of
    longer names.
    """
    _key(p, n, 0x2020202020202020ULL, head, tail)


cdef inline Py_ssize_t _value_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Where the field-value bytes (HTAB, SP, VCHAR, obs-text) from p[i] on end.

    p[n] must not be one: the 0 after the bytes, or the CR or LF ending a line.
    """
    i = _value_run(p, i, n)
    while FIELD[p[i]]:
        i += 1
    return i


cdef inline Py_ssize_t _lf_at(const unsigned char* p, Py_ssize_t i) noexcept:
    """The LF of the line end (LF or CR LF) at p[i], or -1; p[i] may be the 0 after the bytes."""
    if p[i] == 13:
        return i + 1 if p[i + 1] == 10 else -1
    return i if p[i] == 10 else -1


cdef inline int _value_span(const unsigned char* p, Py_ssize_t i, Py_ssize_t end,
                            Py_ssize_t n, Py_ssize_t* v_start, Py_ssize_t* v_end) noexcept:
    """Where the OWS-stripped value after the colon at p[i] lies; 1 if the line is invalid."""
    cdef Py_ssize_t start, stop
    i += 1
    while OWS[p[i]]:
        i += 1
    start = i
    if _value_end(p, i, n) != end:
        return 1
    stop = end
    while stop > start and OWS[p[stop - 1]]:
        stop -= 1
    v_start[0] = start
    v_end[0] = stop
    return 0


cdef inline int _field_span(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                            Py_ssize_t n, Py_ssize_t* name_end, Py_ssize_t* v_start,
                            Py_ssize_t* v_end) noexcept:
    """Where a field line's name ends and its OWS-stripped value lies; 1 if the line is invalid.

    p[end] must be the CR or LF ending the line: it stops the scans, which
    may look at the bytes after it up to p[n].
    """
    cdef Py_ssize_t i = _name_run(p, pos, n)
    while TCHAR[p[i]]:
        i += 1
    if i == pos or p[i] != 58:      # ":" right after the name
        return 1
    name_end[0] = i
    return _value_span(p, i, end, n, v_start, v_end)


cdef inline int _request_field_span(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                                    Py_ssize_t n, Py_ssize_t* name_end, Py_ssize_t* v_start,
                                    Py_ssize_t* v_end) noexcept:
    """_field_span for a request's field line, whose name may be any bytes nginx takes.

    0 for a valid line whose name is letters, digits and "-"; ODD_NAME for a valid line
    with another name (nginx's "invalid header", which underscores_in_headers and
    ignore_invalid_headers decide about); 1 for an invalid line (a 400 in nginx too).
    """
    cdef Py_ssize_t i = _name_run(p, pos, n)
    cdef int kind = 0
    while PLAIN_NAME[p[i]]:
        i += 1
    if p[i] != 58:
        while NAME[p[i]]:
            i += 1
        kind = ODD_NAME
    if i == pos or p[i] != 58:      # ":" right after the name
        return 1
    name_end[0] = i
    if _value_span(p, i, end, n, v_start, v_end):
        return 1
    return kind


cdef inline Py_ssize_t _field_line(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                                   Py_ssize_t* name_end, Py_ssize_t* v_start,
                                   Py_ssize_t* v_end) noexcept:
    """The LF ending the field line at pos, if it is all there and valid (as _field_span
    checks it), with where its name ends and its OWS-stripped value lies; else -1.

    -1 also for the blank line ending a head: the caller then takes the line the
    usual way (memchr, limits, _field_span), which tells incomplete, too long,
    the end of the head and invalid apart.  p[n] must be 0, as at the end of
    every bytes object: it stops the byte loops, so they need no bound.
    """
    cdef Py_ssize_t i = _name_run(p, pos, n), start, stop, lf
    while TCHAR[p[i]]:
        i += 1
    if i == pos or p[i] != 58:      # ":" right after the name
        return -1
    name_end[0] = i
    i += 1
    while OWS[p[i]]:
        i += 1
    start = i
    stop = _value_end(p, i, n)
    lf = _lf_at(p, stop)            # the first byte that is not a field-value byte
    if lf < 0:
        return -1
    while stop > start and OWS[p[stop - 1]]:
        stop -= 1
    v_start[0] = start
    v_end[0] = stop
    return lf


# COMMON as a C table: the names of size s are _common[_common_start[s]:_common_start[s + 1]],
# each with its exact _key, so a field name is looked up without calls.
cdef struct _Common:
    uint64_t head
    uint64_t tail
    const char* text
    PyObject* name              # owned by COMMON
    PyObject* lower

cdef enum:
    COMMON_ROOM = 128           # at least 2 * len(_COMMON_NAMES)

cdef _Common _common[COMMON_ROOM]
cdef Py_ssize_t _common_start[33]


cdef int _init_common() except -1:
    cdef Py_ssize_t size, k = 0
    if 2 * len(_COMMON_NAMES) > COMMON_ROOM:
        raise RuntimeError("_common is too small for _COMMON_NAMES")
    for size in range(32):
        _common_start[size] = k
        for pair in <tuple>COMMON[size]:
            name = (<tuple>pair)[0]
            _common[k].text = PyBytes_AS_STRING(name)
            _key(<const unsigned char*>_common[k].text, size, 0, &_common[k].head, &_common[k].tail)
            _common[k].name = <PyObject*>name
            _common[k].lower = <PyObject*>(<tuple>pair)[1]
            k += 1
    _common_start[32] = k
    return 0

_init_common()


cdef inline Py_ssize_t _common_name(const unsigned char* p, Py_ssize_t n) noexcept:
    """The index in _common of the field name p[:n] as it is, or -1."""
    cdef uint64_t head, tail
    cdef Py_ssize_t i
    if n >= 32:
        return -1
    _key(p, n, 0, &head, &tail)
    for i in range(_common_start[n], _common_start[n + 1]):
        if (_common[i].head == head and _common[i].tail == tail
                and (n <= 16 or memcmp(p + 8, _common[i].text + 8, n - 16) == 0)):
            return i
    return -1


# Where the fields of a head lie, kept until the objects for them are made.
cdef struct _Span:
    Py_ssize_t name             # a field's name and value; in scan_response_head,
    Py_ssize_t name_end         # with value -1: [name, name_end) of lines copied as
    Py_ssize_t value            # they are
    Py_ssize_t value_end

cdef enum:
    SPANS_ON_STACK = 64


cdef _Span* _more_spans(_Span* spans, _Span* stack_spans, Py_ssize_t* capacity) except NULL:
    """Room for twice as many spans, holding the capacity[0] ones of spans (freed unless on the stack)."""
    cdef _Span* grown = <_Span*>PyMem_Malloc(2 * capacity[0] * sizeof(_Span))
    if grown == NULL:
        raise MemoryError()
    memcpy(grown, spans, capacity[0] * sizeof(_Span))
    if spans != stack_spans:
        PyMem_Free(spans)
    capacity[0] *= 2
    return grown


cdef tuple _field_tuple(const unsigned char* p, Py_ssize_t pos, Py_ssize_t name_end,
                        Py_ssize_t v_start, Py_ssize_t v_end):
    """The field (lower_name, name, value) of a valid line: name p[pos:name_end]."""
    cdef Py_ssize_t k, size = name_end - pos
    cdef bint upper = False
    cdef unsigned char c
    cdef char* out
    value = PyBytes_FromStringAndSize(<const char*>p + v_start, v_end - v_start)
    k = _common_name(p + pos, size)
    if k >= 0:
        return <object>_common[k].lower, <object>_common[k].name, value
    name = PyBytes_FromStringAndSize(<const char*>p + pos, size)
    for k in range(pos, name_end):
        if 65 <= p[k] <= 90:
            upper = True
            break
    if upper:
        lower = PyBytes_FromStringAndSize(NULL, size)
        out = PyBytes_AS_STRING(lower)
        for k in range(size):
            c = p[pos + k]
            out[k] = c + 32 if 65 <= c <= 90 else c
    else:
        lower = name
    return lower, name, value


cdef list _field_list(const unsigned char* p, const _Span* spans, Py_ssize_t count):
    """The fields of spans[:count], valid lines, as a list of (lower_name, name, value)."""
    cdef Py_ssize_t k
    cdef list headers = PyList_New(count)
    for k in range(count):
        field = _field_tuple(p, spans[k].name, spans[k].name_end, spans[k].value,
                             spans[k].value_end)
        Py_INCREF(field)                # PyList_SET_ITEM takes this reference
        PyList_SET_ITEM(headers, k, field)
    return headers


cdef int _field(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t n,
                list headers) except -1:
    """Append one field line's (lower_name, name, value); 1 if the line is invalid."""
    cdef Py_ssize_t name_end, v_start, v_end
    if _field_span(p, pos, end, n, &name_end, &v_start, &v_end):
        return 1
    headers.append(_field_tuple(p, pos, name_end, v_start, v_end))
    return 0


cdef inline Py_ssize_t _request_line(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                                     Py_ssize_t* m_end, Py_ssize_t* t_start,
                                     Py_ssize_t* t_end) noexcept:
    """The LF ending the request line at pos if it is all there and of the form
    method 1*SP target 1*SP "HTTP/" DIGIT "." DIGIT, with where its parts lie; else -1.

    The caller then takes the line the usual way, which tells incomplete, too
    long and invalid apart.  p[n] must be 0: it stops the byte loops.
    """
    cdef Py_ssize_t i = pos
    while TCHAR[p[i]]:
        i += 1
    if i == pos or p[i] != 32:
        return -1
    m_end[0] = i
    while p[i] == 32:
        i += 1
    t_start[0] = i
    while TARGET[p[i]]:
        i += 1
    if i == t_start[0] or p[i] != 32:
        return -1
    t_end[0] = i
    while p[i] == 32:
        i += 1
    if (i + 8 > n or memcmp(p + i, b"HTTP/", 5) != 0 or not (48 <= p[i + 5] <= 57)
            or p[i + 6] != 46 or not (48 <= p[i + 7] <= 57)):
        return -1
    return _lf_at(p, i + 8)


cdef inline Py_ssize_t _head_line(const unsigned char* p, Py_ssize_t pos, Py_ssize_t lf,
                                  Py_ssize_t n, Py_ssize_t max_line, Py_ssize_t max_head,
                                  int too_long, Py_ssize_t* end) except -2:
    """The LF ending the request-head line at pos (lf when already found, else -1), with
    the line's end in *end; -1 while the line has not all arrived.

    Raises too_long for a line over max_line and "head too large" past max_head.
    """
    cdef int code
    if lf < 0:
        lf = _find_lf(p, pos, n)
        if lf < 0:
            code = _partial(p, n, pos, max_line, max_head, too_long)
            if code:
                raise _error(code)
            return -1
    end[0] = _line_end(p, pos, lf)
    if end[0] - pos > max_line:
        raise _error(too_long)
    if lf + 1 > max_head:
        raise _error(E_HEAD_LARGE)
    return lf


cpdef parse_request_head(buf, Py_ssize_t max_line, Py_ssize_t max_head):
    """Parse a request head: None if incomplete, else
    (method, target, version, headers, consumed, odd_names)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos = 0, lf, end, i, m_start, m_end, t_start, t_end
    cdef int version
    while pos < n:
        if p[pos] == 10:
            pos += 1
        elif p[pos] == 13 and pos + 1 < n and p[pos + 1] == 10:
            pos += 2
        else:
            break
    m_start = pos

    # A request line all there and well formed is taken in one scan; any other
    # the usual way, which finds its end first, as the twin's order of errors needs.
    lf = _request_line(p, pos, n, &m_end, &t_start, &t_end)
    if lf >= 0:
        lf = _head_line(p, pos, lf, n, max_line, max_head, E_REQUEST_LINE_LONG, &end)
        i = end - 8
    else:
        lf = _head_line(p, pos, -1, n, max_line, max_head, E_REQUEST_LINE_LONG, &end)
        if lf < 0:
            return None
        i = pos
        while i < end and TCHAR[p[i]]:
            i += 1
        if i == pos or i == end or p[i] != 32:
            raise _error(E_REQUEST_LINE)
        m_end = i
        while i < end and p[i] == 32:
            i += 1
        t_start = i
        while i < end and TARGET[p[i]]:
            i += 1
        if i == t_start or i == end or p[i] != 32:
            raise _error(E_REQUEST_LINE)
        t_end = i
        while i < end and p[i] == 32:
            i += 1
        if (end - i != 8 or memcmp(p + i, b"HTTP/", 5) != 0 or not (48 <= p[i + 5] <= 57)
                or p[i + 6] != 46 or not (48 <= p[i + 7] <= 57)):
            raise _error(E_REQUEST_LINE)
    if p[i + 5] == 49 and (p[i + 7] == 48 or p[i + 7] == 49):
        version = 10 if p[i + 7] == 48 else 11
    elif p[i + 5] == 48:
        raise _error(E_VERSION_BAD)
    else:
        raise _error(E_VERSION_UNSUPPORTED)
    if (t_end - t_start == 1 and p[t_start] == 42
            and not (m_end - pos == 7 and memcmp(p + pos, b"OPTIONS", 7) == 0)):
        raise _error(E_ASTERISK)

    # The field lines are checked first, keeping where their parts lie: the
    # objects are made once the head is complete and valid, the list at its size.
    cdef _Span stack_spans[SPANS_ON_STACK]
    cdef _Span* spans = stack_spans
    cdef Py_ssize_t count = 0, capacity = SPANS_ON_STACK, name_end, v_start, v_end
    cdef int kind
    cdef bint odd_names = False
    try:
        pos = lf + 1
        while True:
            lf = _lf_at(p, pos)             # the blank line, without memchr
            lf = _head_line(p, pos, lf, n, max_line, max_head, E_HEADER_LINE_LONG, &end)
            if lf < 0:
                return None
            if end == pos:
                break
            kind = _request_field_span(p, pos, end, n, &name_end, &v_start, &v_end)
            if kind:
                if kind != ODD_NAME:
                    raise _error(E_HEADER_LINE)
                odd_names = True
            if count == capacity:
                spans = _more_spans(spans, stack_spans, &capacity)
            spans[count].name = pos
            spans[count].name_end = name_end
            spans[count].value = v_start
            spans[count].value_end = v_end
            count += 1
            pos = lf + 1

        headers = _field_list(p, spans, count)
    finally:
        if spans != stack_spans:
            PyMem_Free(spans)
    return (_method(p + m_start, m_end - m_start),
            PyBytes_FromStringAndSize(<const char*>p + t_start, t_end - t_start),
            version, headers, lf + 1, odd_names)


cdef inline int _status_line(const unsigned char* p, Py_ssize_t end,
                             int* version, int* status) noexcept:
    """Check the status line p[:end] (RFC 9112 4); 1 if invalid, else 0 and its version and status."""
    cdef Py_ssize_t i
    if (end < 12 or memcmp(p, b"HTTP/1.", 7) != 0 or not (p[7] == 48 or p[7] == 49)
            or p[8] != 32 or not (49 <= p[9] <= 57) or not (48 <= p[10] <= 57)
            or not (48 <= p[11] <= 57)):
        return 1
    if end > 12:
        if p[12] != 32:
            return 1
        for i in range(13, end):
            if not FIELD[p[i]]:
                return 1
    version[0] = 10 if p[7] == 48 else 11
    status[0] = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    return 0


cdef inline Py_ssize_t _response_line(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                                      Py_ssize_t max_head) except -2:
    """The LF ending the response-head line at pos, or -1 while it has not all arrived.

    Raises "upstream sent too big header" once the head cannot fit in max_head.
    """
    cdef Py_ssize_t lf = _find_lf(p, pos, n)
    if lf < 0:
        if n > max_head:
            raise _error(E_UP_TOO_BIG)
        return -1
    if lf + 1 > max_head:
        raise _error(E_UP_TOO_BIG)
    return lf


def parse_response_head(buf, Py_ssize_t max_head):
    """Parse a response head: None if incomplete, else (version, status, reason, headers, consumed)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos, lf, end
    cdef int version, status
    lf = _response_line(p, 0, n, max_head)
    if lf < 0:
        return None
    end = _line_end(p, 0, lf)
    if _status_line(p, end, &version, &status):
        raise _error(E_UP_STATUS)
    reason = PyBytes_FromStringAndSize(<const char*>p + 13, end - 13) if end > 12 else b""

    cdef list headers = []
    pos = lf + 1
    while True:
        lf = _response_line(p, pos, n, max_head)
        if lf < 0:
            return None
        end = _line_end(p, pos, lf)
        if end == pos:
            return version, status, reason, headers, lf + 1
        if _field(p, pos, end, n, headers):
            raise _error(E_UP_HEADER)
        pos = lf + 1


cdef inline int64_t _length_digits(const unsigned char* p, Py_ssize_t n) noexcept:
    """A Content-Length value (RFC 9110 8.6: 1*DIGIT, no lists, at most INT64_MAX), or -1."""
    cdef Py_ssize_t i
    cdef int64_t length = 0
    cdef int d
    if n == 0:
        return -1
    if n <= 18:                 # 18 digits cannot reach INT64_MAX
        for i in range(n):
            d = p[i] - 48
            if d < 0 or d > 9:
                return -1
            length = length * 10 + d
        return length
    for i in range(n):
        d = p[i] - 48
        if d < 0 or d > 9 or length > (INT64_MAX - d) // 10:
            return -1
        length = length * 10 + d
    return length


cdef int64_t _content_length(bytes value, error) except -1:
    """A Content-Length value (RFC 9110 8.6: 1*DIGIT, no lists)."""
    cdef int64_t length = _length_digits(<const unsigned char*>PyBytes_AS_STRING(value),
                                         PyBytes_GET_SIZE(value))
    if length < 0:
        raise error("invalid Content-Length")
    return length


cdef tuple _framing_fields(list headers, error):
    """The Content-Length value (None if absent) and the joined Transfer-Encoding (or None)."""
    length = None
    coding = None
    for lower, _name, value in headers:
        if lower == b"content-length":
            if length is not None:
                raise error("duplicate Content-Length")
            length = value
        elif lower == b"transfer-encoding":
            coding = value if coding is None else coding + b"," + value
    return length, coding


cdef list _codings(bytes value):
    return [c for c in (item.strip(b" \t").lower() for item in value.split(b",")) if c]


cpdef tuple request_body_framing(headers, int version):
    """How a request body is delimited: ("none"|"length"|"chunked", length)."""
    cdef Py_ssize_t size
    cdef int64_t length
    value = None
    # What parse_request_head gives, without Transfer-Encoding and with at most
    # one Content-Length, is answered here; names are compared only when their
    # size is one of the two.  Anything else takes the general code below.
    if type(headers) is list:
        for item in <list>headers:
            if type(item) is not tuple or len(<tuple>item) != 3:
                break
            lower = (<tuple>item)[0]
            if type(lower) is not bytes:
                break
            size = PyBytes_GET_SIZE(lower)
            if size == 14 and memcmp(PyBytes_AS_STRING(lower), b"content-length", 14) == 0:
                if value is not None:
                    break
                value = (<tuple>item)[2]
            elif size == 17 and memcmp(PyBytes_AS_STRING(lower), b"transfer-encoding", 17) == 0:
                break
        else:
            if value is None:
                return "none", 0
            if type(value) is bytes:
                length = _length_digits(<const unsigned char*>PyBytes_AS_STRING(value),
                                        PyBytes_GET_SIZE(value))
                if length < 0:
                    raise BadRequest("invalid Content-Length")
                return "length", length
    return _request_body_framing(headers, version)


cdef tuple _request_body_framing(headers, int version):
    """request_body_framing() for any headers."""
    length, coding = _framing_fields(headers, BadRequest)
    if coding is not None:
        if version == 10:
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if length is not None:      # RFC 9112 6.1
            raise BadRequest("both Content-Length and Transfer-Encoding")
        codings = _codings(coding)
        for item in codings:
            if item != b"chunked":
                raise NotImplementedMethod("unknown transfer-coding")
        if len(codings) != 1:
            raise BadRequest("invalid Transfer-Encoding")
        return "chunked", 0
    if length is not None:
        return "length", _content_length(length, BadRequest)
    return "none", 0


def response_body_framing(int status, headers, request_method):
    """How a response body is delimited: ("none"|"length"|"chunked"|"close", length)."""
    if (request_method == b"HEAD" or request_method == "HEAD" or status < 200
            or status == 204 or status == 304):
        return "none", 0
    length, coding = _framing_fields(headers, InvalidUpstreamResponse)
    if coding is not None and length is not None:      # see the twin
        raise InvalidUpstreamResponse('upstream sent "Content-Length" and "Transfer-Encoding" '
                                      'headers at the same time')
    if coding is not None:         # RFC 9112 6.3
        codings = _codings(coding)
        if codings and codings[len(codings) - 1] == b"chunked":
            return "chunked", 0
        return "close", 0
    if length is not None:
        return "length", _content_length(length, InvalidUpstreamResponse)
    return "close", 0


# Response heads for the relay -------------------------------------------------
#
# scan_response_head() validates a head exactly as parse_response_head() and
# decides its framing exactly as response_body_framing(), but builds no object
# per field: it records spans, then copies the relayed fields into one bytes.

# The lowercase names of the fields not relayed (set_hidden_response) that a
# field can have, grouped by size (63: 63 and more), with a bit per size so
# most fields skip the table.
cdef struct _Name:
    const char* text            # owned by _hidden_names
    Py_ssize_t size
    uint64_t head               # _name_key(text, size)
    uint64_t tail
    bint exact                  # with "^" or "~": _name_key cannot tell them apart

cdef _Name* _hidden = NULL
cdef Py_ssize_t _hidden_start[65]   # the names of size group s: _hidden[_hidden_start[s]:_hidden_start[s + 1]]
cdef unsigned long long _hidden_lengths = 0
cdef tuple _hidden_names = ()       # as set, names no field can have included


cdef inline Py_ssize_t _size_group(Py_ssize_t size) noexcept:
    return size if size < 63 else 63


cdef bint _lowered_token(bytes name):
    """Whether name is what a field name lowered can be: token characters, no capitals."""
    if not name:
        return False
    for c in name:
        if not TCHAR[c] or 65 <= c <= 90:
            return False
    return True


cdef int set_hidden_response(frozenset lower_names) except -1:
    """Set the lowercase field names scan_response_head() leaves out of the relayed block."""
    global _hidden, _hidden_lengths, _hidden_names
    if lower_names is None:
        raise TypeError("hidden field names must be a frozenset of bytes")
    cdef Py_ssize_t i, group, count
    cdef unsigned long long lengths = 0
    cdef _Name* table
    for name in lower_names:
        if not isinstance(name, bytes):
            raise TypeError("hidden field names must be a frozenset of bytes")
    cdef list ordered = []
    cdef Py_ssize_t start[65]
    for group in range(64):
        start[group] = len(ordered)
        for name in lower_names:
            if _size_group(len(name)) == group and _lowered_token(name):
                ordered.append(name)
    count = len(ordered)
    start[64] = count
    table = <_Name*>PyMem_Malloc((count if count else 1) * sizeof(_Name))
    if table == NULL:
        raise MemoryError()
    for i in range(count):
        name = ordered[i]
        table[i].text = PyBytes_AS_STRING(name)
        table[i].size = PyBytes_GET_SIZE(name)
        _name_key(<const unsigned char*>table[i].text, table[i].size,
                  &table[i].head, &table[i].tail)
        table[i].exact = b"^" in name or b"~" in name
        lengths |= 1ULL << _size_group(table[i].size)
    PyMem_Free(_hidden)
    _hidden = table
    memcpy(_hidden_start, start, sizeof(start))
    _hidden_lengths = lengths
    _hidden_names = tuple(lower_names)      # keeps the texts of the table alive
    return 0


cdef inline bint _lower_eq(const unsigned char* p, const char* lower, Py_ssize_t n) noexcept:
    """p[:n].lower() == lower[:n]."""
    cdef Py_ssize_t k
    for k in range(n):
        if LOWER[p[k]] != <unsigned char>lower[k]:
            return False
    return True


cdef inline bint _is_hidden(const unsigned char* p, Py_ssize_t n, uint64_t head,
                            uint64_t tail) noexcept:
    """Whether the field name p[:n], of key (head, tail), is a hidden name."""
    cdef Py_ssize_t i, group = _size_group(n)
    for i in range(_hidden_start[group], _hidden_start[group + 1]):
        if _hidden[i].head == head and _hidden[i].tail == tail and _hidden[i].size == n:
            # Several names can share a key: only a full match ends the search.
            if _hidden[i].exact:
                if _lower_eq(p, _hidden[i].text, n):
                    return True
            elif n <= 16 or _lower_eq(p + 8, _hidden[i].text + 8, n - 16):
                return True
    return False


# Keys of the names scan_response_head() acts on, and their sizes as bits.
cdef uint64_t CL_HEAD, CL_TAIL, TE_HEAD, TE_TAIL, CONN_HEAD, CONN_TAIL
_name_key(<const unsigned char*>b"content-length", 14, &CL_HEAD, &CL_TAIL)
_name_key(<const unsigned char*>b"transfer-encoding", 17, &TE_HEAD, &TE_TAIL)
_name_key(<const unsigned char*>b"connection", 10, &CONN_HEAD, &CONN_TAIL)
# Location and Refresh are only noted (ResponseHead.redirect_field: proxy_redirect edits them).
cdef uint64_t LOCATION_HEAD, LOCATION_TAIL, REFRESH_HEAD, REFRESH_TAIL
_name_key(<const unsigned char*>b"location", 8, &LOCATION_HEAD, &LOCATION_TAIL)
_name_key(<const unsigned char*>b"refresh", 7, &REFRESH_HEAD, &REFRESH_TAIL)
cdef unsigned long long FRAMING_LENGTHS = ((1ULL << 14) | (1ULL << 17) | (1ULL << 10)
                                           | (1ULL << 8) | (1ULL << 7))
cdef uint64_t LOSE = _load4(<const unsigned char*>b"lose")
cdef uint64_t KEEP_ALIVE_HEAD, KEEP_ALIVE_TAIL     # the usual Connection value
_name_key(<const unsigned char*>b"keep-alive", 10, &KEEP_ALIVE_HEAD, &KEEP_ALIVE_TAIL)


cdef inline bint _is_keep_alive(const unsigned char* p, Py_ssize_t n) noexcept:
    """p[:n].lower() == b"keep-alive" for field-value bytes: the usual Connection value.

    Keys compare field values too: of the bytes that give "-" ORed with 0x20,
    CR is not a field-value byte.
    """
    cdef uint64_t head, tail
    if n != 10:
        return False
    _name_key(p, 10, &head, &tail)
    return head == KEEP_ALIVE_HEAD and tail == KEEP_ALIVE_TAIL


cdef inline bint _has_close(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) noexcept:
    """b"close" in p[start:end].lower(), as proxy.py checks a Connection value.

    A byte ORed with 0x20 equals a lowercase letter only if it is that letter
    in either case, so the ORed bytes can be compared with "close".
    """
    cdef Py_ssize_t i
    for i in range(start, end - 4):
        if (p[i] | 0x20) == 99 and (_load4(p + i + 1) | 0x20202020) == LOSE:
            return True
    return False


cdef int _last_coding(const unsigned char* p, Py_ssize_t start, Py_ssize_t end,
                      int last) noexcept:
    """The last transfer-coding so far (-1 none, 0 other, 1 chunked) after one more value.

    Joining the Transfer-Encoding fields with "," and splitting the result on ","
    (response_body_framing) gives the items of each field in turn, so they can
    be taken field by field; items empty once stripped of SP/HTAB do not count.
    """
    cdef Py_ssize_t i = start, j, a, b
    while i <= end:
        j = i
        while j < end and p[j] != 44:
            j += 1
        a = i
        b = j
        while a < b and _is_ws(p[a]):
            a += 1
        while b > a and _is_ws(p[b - 1]):
            b -= 1
        if b > a:
            last = 1 if b - a == 7 and _lower_eq(p + a, b"chunked", 7) else 0
        i = j + 1
    return last


cdef object scan_response_head(bytes buf, Py_ssize_t max_head, bint head_request,
                               ResponseHead* out):
    """Validate a response head: None if incomplete, else fill *out and return the relayed fields.

    Raises what parse_response_head(buf, max_head) raises.  The result is
    name + b": " + value + b"\\r\\n" for each field not hidden (set_hidden_response),
    in order; *out is written only then.
    """
    if buf is None:
        raise TypeError("buf must be bytes")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos, lf, end, name_end, v_start, v_end, size, k
    cdef Py_ssize_t count = 0, capacity = SPANS_ON_STACK, total = 0
    cdef Py_ssize_t cl_start = 0, cl_end = 0
    cdef int version, status, content_lengths = 0, coding = -1, framing
    cdef bint te_seen = False, close = False, hidden, redirect = False, accel_rate = False
    cdef int64_t length = 0
    cdef uint64_t head, tail
    cdef _Span stack_spans[SPANS_ON_STACK]
    cdef _Span* spans = stack_spans
    cdef char* w

    # A status line all there and valid is taken without memchr and a second pass.
    lf = -1
    if n > 12 and _status_line(p, 12, &version, &status) == 0:
        lf = _lf_at(p, _value_end(p, 13, n) if p[12] == 32 else 12)
        if lf >= 0 and lf + 1 > max_head:
            raise _error(E_UP_TOO_BIG)
    if lf < 0:
        lf = _response_line(p, 0, n, max_head)
        if lf < 0:
            return None
        if _status_line(p, _line_end(p, 0, lf), &version, &status):
            raise _error(E_UP_STATUS)

    try:
        pos = lf + 1
        while True:
            lf = _field_line(p, pos, n, &name_end, &v_start, &v_end)
            if lf < 0:
                lf = _lf_at(p, pos)
                if lf >= 0:             # the blank line ending the head
                    if lf + 1 > max_head:
                        raise _error(E_UP_TOO_BIG)
                    break
                # A line not all there, or invalid: the twin's checks, in its order.
                lf = _response_line(p, pos, n, max_head)
                if lf < 0:
                    return None
                end = _line_end(p, pos, lf)
                if end == pos:
                    break
                if _field_span(p, pos, end, n, &name_end, &v_start, &v_end):
                    raise _error(E_UP_HEADER)
            elif lf + 1 > max_head:
                raise _error(E_UP_TOO_BIG)
            size = name_end - pos
            hidden = False
            # Only names of a size some known name has are compared, a word at a time.
            if ((_hidden_lengths | FRAMING_LENGTHS) >> _size_group(size)) & 1:
                _name_key(p + pos, size, &head, &tail)
                if size == 14 and head == CL_HEAD and tail == CL_TAIL:
                    content_lengths += 1
                    cl_start = v_start
                    cl_end = v_end
                elif (size == 17 and head == TE_HEAD and tail == TE_TAIL
                        and p[pos + 8] == 45):      # the "-" the key leaves out
                    te_seen = True
                    coding = _last_coding(p, v_start, v_end, coding)
                elif size == 10 and head == CONN_HEAD and tail == CONN_TAIL:
                    if not close and not _is_keep_alive(p + v_start, v_end - v_start):
                        close = _has_close(p, v_start, v_end)
                elif (size == 8 and head == LOCATION_HEAD and tail == LOCATION_TAIL) or \
                        (size == 7 and head == REFRESH_HEAD and tail == REFRESH_TAIL):
                    redirect = True
                if (_hidden_lengths >> _size_group(size)) & 1:
                    hidden = _is_hidden(p + pos, size, head, tail)
                    if hidden and size == 18 and _lower_eq(p + pos, b"x-accel-limit-rate", 18):
                        accel_rate = True
            if not hidden:
                total += size + v_end - v_start + 4
                if (v_start == name_end + 2 and p[name_end + 1] == 32
                        and lf == v_end + 1 and p[v_end] == 13):
                    # Already "name: value\r\n": copied as it is, with the line before
                    # if that one was too.
                    if count and spans[count - 1].value < 0 and spans[count - 1].name_end == pos:
                        spans[count - 1].name_end = lf + 1
                        pos = lf + 1
                        continue
                    v_start = -1
                    name_end = lf + 1
                if count == capacity:
                    spans = _more_spans(spans, stack_spans, &capacity)
                spans[count].name = pos
                spans[count].name_end = name_end
                spans[count].value = v_start
                spans[count].value_end = v_end
                count += 1
            pos = lf + 1

        # The order of response_body_framing(): no body for HEAD, 1xx, 204 and
        # 304 whatever the fields say; a second Content-Length is an error, and so
        # is a Content-Length beside Transfer-Encoding.
        if head_request or status < 200 or status == 204 or status == 304:
            framing = FRAME_NONE
        elif content_lengths > 1 or (content_lengths and te_seen):
            framing = FRAME_ERROR
        elif te_seen:
            framing = FRAME_CHUNKED if coding == 1 else FRAME_CLOSE
        elif content_lengths:
            length = _length_digits(p + cl_start, cl_end - cl_start)
            if length < 0:
                framing = FRAME_ERROR
                length = 0
            else:
                framing = FRAME_LENGTH
        else:
            framing = FRAME_CLOSE

        block = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(block)
        for k in range(count):
            size = spans[k].name_end - spans[k].name
            _copy(w, p + spans[k].name, size)
            w += size
            if spans[k].value >= 0:
                w[0] = 58
                w[1] = 32
                w += 2
                size = spans[k].value_end - spans[k].value
                _copy(w, p + spans[k].value, size)
                w += size
                w[0] = 13
                w[1] = 10
                w += 2
    finally:
        if spans != stack_spans:
            PyMem_Free(spans)

    out.version = version
    out.status = status
    out.consumed = lf + 1
    out.framing = framing
    out.length = length
    out.connection_close = close
    out.redirect_field = redirect
    out.accel_limit_rate = accel_rate
    return block


_FRAMING_NAMES = ("none", "length", "chunked", "close", "error")


def _set_hidden_response(lower_names):
    """Test hook: set_hidden_response(frozenset(lower_names)); returns the names it replaced."""
    previous = frozenset(_hidden_names)
    set_hidden_response(frozenset(lower_names))
    return previous


def _scan_response_head(buf, Py_ssize_t max_head, bint head_request):
    """Test hook: scan_response_head() as None or (version, status, consumed, framing, length,
    connection_close, block)."""
    cdef ResponseHead head
    if type(buf) is not bytes:
        buf = bytes(buf)
    block = scan_response_head(buf, max_head, head_request, &head)
    if block is None:
        return None
    return (head.version, head.status, head.consumed, _FRAMING_NAMES[head.framing],
            head.length, head.connection_close, block)


# Chunked decoder states, as in the twin.
cdef enum:
    S_SIZE = 0
    S_SIZE_MORE
    S_BWS
    S_EXT
    S_SIZE_LF
    S_DATA
    S_DATA_CR
    S_DATA_LF
    S_TRAILER
    S_TRAILER_LINE
    S_TRAILER_LF
    S_END_LF
    S_DONE


cdef class ChunkedDecoder:
    """Incremental RFC 9112 7.1 chunked-body delimiter and (optionally) decoder."""

    cdef int state
    cdef int64_t remaining
    cdef Py_ssize_t line_len
    cdef int digits
    cdef Py_ssize_t trailer_len

    def __init__(self):
        self.state = S_SIZE
        self.remaining = 0
        self.line_len = 0
        self.digits = 0
        self.trailer_len = 0

    @property
    def done(self):
        """True once the last chunk and the trailer section are consumed."""
        return self.state == S_DONE

    def feed(self, data, bint collect=False):
        """Consume the body bytes at the start of data: (count, payload pieces or None)."""
        if type(data) is not bytes:
            data = bytes(data)
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i = 0, take
        cdef int state = self.state
        cdef unsigned char c
        cdef int d
        pieces = [] if collect else None
        try:
            while i < n and state != S_DONE:
                if state == S_DATA:
                    take = n - i
                    if self.remaining < take:
                        take = <Py_ssize_t>self.remaining
                    if collect:
                        pieces.append(PyBytes_FromStringAndSize(<const char*>p + i, take))
                    i += take
                    self.remaining -= take
                    if self.remaining == 0:
                        state = S_DATA_CR
                    continue
                c = p[i]
                i += 1
                if state <= S_EXT:
                    self.line_len += 1
                    if self.line_len > MAX_SIZE_LINE:
                        raise BadRequest("chunk size line too long")
                    if state == S_SIZE or state == S_SIZE_MORE:
                        d = HEXVAL[c]
                        if d >= 0:
                            self.digits += 1
                            if self.digits > MAX_SIZE_DIGITS or self.remaining > (INT64_MAX >> 4):
                                raise BadRequest("chunk size too large")
                            self.remaining = (self.remaining << 4) | d
                            state = S_SIZE_MORE
                            continue
                        if state == S_SIZE:
                            raise BadRequest("invalid chunk size")
                    elif state == S_EXT:
                        if c == 13:
                            state = S_SIZE_LF
                        elif not FIELD[c]:
                            raise BadRequest("invalid chunk extension")
                        continue
                    if c == 32 or c == 9:
                        state = S_BWS
                    elif c == 59:
                        state = S_EXT
                    elif c == 13:
                        state = S_SIZE_LF
                    else:
                        raise BadRequest("invalid chunk size")
                elif state == S_SIZE_LF:
                    if c != 10:
                        raise BadRequest("invalid chunk size line")
                    state = S_DATA if self.remaining else S_TRAILER
                elif state == S_DATA_CR:
                    if c != 13:
                        raise BadRequest("missing CRLF after chunk data")
                    state = S_DATA_LF
                elif state == S_DATA_LF:
                    if c != 10:
                        raise BadRequest("missing CRLF after chunk data")
                    state = S_SIZE
                    self.line_len = 0
                    self.digits = 0
                else:
                    self.trailer_len += 1
                    if self.trailer_len > MAX_TRAILER:
                        raise BadRequest("chunked trailer too large")
                    if state == S_TRAILER or state == S_TRAILER_LINE:
                        if c == 13:
                            state = S_END_LF if state == S_TRAILER else S_TRAILER_LF
                        elif c == 10:
                            raise BadRequest("invalid chunked trailer")
                        else:
                            state = S_TRAILER_LINE
                    elif c != 10:
                        raise BadRequest("invalid chunked trailer")
                    else:
                        state = S_TRAILER if state == S_TRAILER_LF else S_DONE
        finally:
            self.state = state
        return i, pieces


cdef Py_ssize_t _absolute_path(const unsigned char* p, Py_ssize_t n) except -1:
    """Where the path (or query) of an absolute-form target starts, as the twin's regex."""
    cdef Py_ssize_t i, start
    cdef unsigned char c
    if n == 0 or not ((65 <= p[0] <= 90) or (97 <= p[0] <= 122)):
        raise BadRequest("invalid request target")
    i = 1
    while i < n:
        c = p[i]
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 43 or c == 46 or c == 45:
            i += 1
        else:
            break
    if n - i < 3 or memcmp(p + i, b"://", 3) != 0:
        raise BadRequest("invalid request target")
    i += 3
    start = i
    if i < n and p[i] == 91:        # "[" IPv6 literal
        i += 1
        while i < n and (HEXVAL[p[i]] >= 0 or p[i] == 58 or p[i] == 46):
            i += 1
        if i == start + 1 or i == n or p[i] != 93:
            raise BadRequest("invalid request target")
        i += 1
    else:
        while i < n and HOST[p[i]]:
            i += 1
        if i == start:
            raise BadRequest("invalid request target")
    if i < n and p[i] == 58:
        i += 1
        while i < n and 48 <= p[i] <= 57:
            i += 1
    if i < n and p[i] != 47 and p[i] != 63:
        raise BadRequest("invalid request target")
    return i


cdef inline void _pop_segment(unsigned char* u, Py_ssize_t* ulen) except *:
    cdef Py_ssize_t j = ulen[0] - 4
    while j >= 0 and u[j] != 47:
        j -= 1
    if j < 0:
        raise BadRequest("URI climbs above the root")
    ulen[0] = j + 1


cdef inline str _decode(const unsigned char* p, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")


cdef inline str _ascii(const unsigned char* p, Py_ssize_t n):
    """p[:n], every byte below 0x80, as str: what _decode() gives, without its checks."""
    cdef str s = PyUnicode_New(n, 127)
    _copy(PyUnicode_1BYTE_DATA(s), p, n)
    return s


cdef inline Py_ssize_t _plain_path(const unsigned char* t, Py_ssize_t n) noexcept:
    """The end of the path of an origin-form target (n, or where its "?" is) if the path is
    ASCII without "%" or "#" and the normaliser would leave it as it is; else -1.

    The normaliser changes a path only at "%", "//" and "." or ".." segments
    ("/." or "/.." followed by "/", "?", "#" or the end), and "#" ends it;
    a "#" anywhere gives -1, so the segment check need not look for it.
    t[n] must be 0, as at the end of every bytes object: it stops the scan.
    """
    cdef Py_ssize_t i = 0, j
    cdef unsigned char k
    while True:
        while PATH[t[i]] == P_PLAIN:
            i += 1
        k = PATH[t[i]]
        if k == P_SLASH:
            j = i + 1
            if t[j] == 46:
                j += 1
                if t[j] == 46:
                    j += 1
                if j == n or t[j] == 47 or t[j] == 63:
                    return -1
            elif t[j] == 47:
                return -1
            i += 1
        elif k == P_NUL:
            if i == n:
                return n
            i += 1              # a NUL byte of the target: copied as it is
        elif k == P_QUERY:
            return i
        else:
            return -1


cpdef tuple split_target(target):
    """Split a request target into ($uri decoded and normalised, $args, $request_uri)."""
    if type(target) is not bytes:
        return split_target(bytes(target))     # (not reassigned: that costs a reference)
    cdef const unsigned char* t = <const unsigned char*>PyBytes_AS_STRING(target)
    cdef Py_ssize_t tn = PyBytes_GET_SIZE(target)
    cdef Py_ssize_t q, k
    cdef str whole
    if tn > 0 and t[0] == 47:
        # Fast path: an ASCII target without "#" whose path the normaliser would
        # not change: $uri is the path as it is, $args the query, if any.
        q = _plain_path(t, tn)
        if q == tn:
            if tn == 1:
                return "/", "", "/"
            whole = _ascii(t, tn)
            return whole, "", whole
        if q > 0:
            k = q + 1
            while k < tn and t[k] < 0x80 and t[k] != 35:
                k += 1
            if k == tn:
                return _ascii(t, q), _ascii(t + q + 1, tn - q - 1), _ascii(t, tn)
    return _split_target(target, t, tn)


cdef tuple _split_target(bytes target, const unsigned char* t, Py_ssize_t tn):
    """split_target() for any target: the normaliser."""
    cdef Py_ssize_t start, i, n, ulen = 0, a_start = 0, a_end = 0
    cdef const unsigned char* path
    cdef unsigned char* u
    cdef unsigned char ch
    cdef int state = 0, hi, lo
    cdef bytes owned
    if tn == 1 and t[0] == 42:
        return "*", "", "*"
    if tn > 0 and t[0] == 47:
        path = t
        n = tn
    else:
        start = _absolute_path(t, tn)
        if start < tn and t[start] == 47:
            path = t + start
            n = tn - start
        else:
            # Empty path: "/" then the query, if any (RFC 9110 4.2.3).
            owned = b"/" + target[start:]
            path = <const unsigned char*>PyBytes_AS_STRING(owned)
            n = PyBytes_GET_SIZE(owned)

    u = <unsigned char*>PyMem_Malloc(n + 1)
    if u == NULL:
        raise MemoryError()
    try:
        i = 0
        while i < n:
            ch = path[i]
            i += 1
            if ch == 37:
                hi = HEXVAL[path[i]] if i < n else -1
                lo = HEXVAL[path[i + 1]] if i + 1 < n else -1
                if hi < 0 or lo < 0:
                    raise BadRequest("invalid %-escape in URI")
                i += 2
                ch = (hi << 4) | lo
                if ch == 0:
                    raise BadRequest("%00 in URI")
                if ch == 37 or ch == 35 or ch == 63:
                    u[ulen] = ch
                    ulen += 1
                    state = 0
                    continue
            elif ch == 63 or ch == 35:
                if ch == 63:
                    a_start = i
                    a_end = i
                    while a_end < n and path[a_end] != 35:
                        a_end += 1
                break
            if ch == 47:
                if state == 1:
                    continue
                if state == 2:
                    ulen -= 1
                elif state == 3:
                    _pop_segment(u, &ulen)
                    state = 1
                    continue
                else:
                    u[ulen] = ch
                    ulen += 1
                state = 1
            elif ch == 46 and (state == 1 or state == 2):
                u[ulen] = ch
                ulen += 1
                state += 1
            else:
                u[ulen] = ch
                ulen += 1
                state = 0
        if state == 2:
            ulen -= 1
        elif state == 3:
            _pop_segment(u, &ulen)
        return (_decode(u, ulen), _decode(path + a_start, a_end - a_start),
                _decode(path, n))
    finally:
        PyMem_Free(u)
