"""C interface of _fastpath/httpparse.pyx, for modules that cimport it (proxyproto)."""

# How a response body is delimited, as response_body_framing() decides.
cdef enum:
    FRAME_NONE = 0          # no body ("none")
    FRAME_LENGTH = 1        # Content-Length bytes ("length")
    FRAME_CHUNKED = 2       # chunked transfer-coding ("chunked")
    FRAME_CLOSE = 3         # until the upstream closes ("close")
    FRAME_ERROR = 4         # response_body_framing would raise; the caller decides when to

cdef struct ResponseHead:
    int version                 # 10 or 11
    int status
    Py_ssize_t consumed         # length of the head, final blank line included
    int framing                 # FRAME_*
    long long length            # the Content-Length when framing == FRAME_LENGTH, else 0
    bint connection_close       # a "Connection" field whose value, lowercased, contains b"close"
    bint redirect_field         # a "Location" or "Refresh" field (proxy_redirect's concern)
    bint accel_limit_rate       # a hidden "X-Accel-Limit-Rate" field (gateway/http/limit_rate.py)

cdef int set_hidden_response(frozenset lower_names) except -1
cdef object scan_response_head(bytes buf, Py_ssize_t max_head, bint head_request,
                               ResponseHead* out)

# Called once per request by proxyproto: cpdef, so that call skips Python's argument passing.
cpdef parse_request_head(buf, Py_ssize_t max_line, Py_ssize_t max_head)
cpdef tuple request_body_framing(headers, int version)
cpdef tuple split_target(target)
