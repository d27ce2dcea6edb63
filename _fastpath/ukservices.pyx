# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of the services of gateway/unikernel/dispatch.py: what part of a request each one sends
(builders) and how its reply becomes a response (readers). Same results as the twin (tests/unikernel/
test_ukpath_parity.py); the builders return plain ints where the twin returns wire.Op members (equal,
and the pool only encodes them). _fastpath/ukpath.pyx calls them at C level (ukservices.pxd).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_Tailmatch

from gateway.errors import ServiceRefused

__all__ = ["build_request", "read_reply"]


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)
    void *PyUnicode_DATA(object text)
    const Py_ssize_t PY_SSIZE_T_MAX


# wire.Op and wire.Status values.
DEF OP_ECHO = 0x10
DEF OP_KV_GET = 0x20
DEF OP_KV_PUT = 0x21
DEF OP_KV_DELETE = 0x22
DEF OP_STATIC_GET = 0x30
DEF OP_AUTH_VERIFY = 0x40
DEF OP_WEBHOOK_VERIFY = 0x50
DEF ST_OK = 0
DEF ST_BAD_REQUEST = 2
DEF ST_UNAUTHORIZED = 6
DEF ST_EXPIRED = 7
DEF ST_NOT_YET_VALID = 8
DEF ST_NO_KEY = 9
DEF ST_NOT_MODIFIED = 10

cdef dict _SERVICE_CODES = {"echo": SVC_ECHO, "kv": SVC_KV, "static": SVC_STATIC, "auth": SVC_AUTH,
                            "webhook": SVC_WEBHOOK}
cdef bytes OCTETS = b"application/octet-stream"
cdef bytes JSON = b"application/json"
cdef str WEBHOOK_HEADER = "header:x-hub-signature-256"
cdef bytes NO_EXTRA = b""
# Statuses any operation may get, as HTTP statuses (dispatch.COMMON_STATUS).
cdef dict COMMON_STATUS = {2: 400, 3: 413, 5: 507, 4: 502, 1: 404}
cdef tuple NO_CONTENT = (204, b"", None, b"")


cdef inline bint _idempotent(str method):
    return method == "GET" or method == "HEAD"


cdef tuple _failure(int status):
    return (COMMON_STATUS.get(status, 502), None, None, NO_EXTRA)


cdef object uri_prefix(location):
    """The prefix a URI part loses in this location ("/kv/" of `location /kv/`, less its "/"), or None."""
    if location is not None and location.modifier in ("", "^~") and location.pattern.endswith("/"):
        return location.pattern
    return None


cdef int part_kind(str spec):
    if spec == "body":
        return PART_BODY
    if spec == "args":
        return PART_ARGS
    if spec.startswith("header:"):
        return PART_HEADER
    return PART_URI


cdef inline bytes _utf8(str text):
    """text.encode("utf-8", "surrogateescape"), copied straight when it is ASCII (a URI nearly always)."""
    if PyUnicode_IS_ASCII(text):
        return PyBytes_FromStringAndSize(<const char *>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    return text.encode("utf-8", "surrogateescape")


cdef object part_of(request, bytes body, str spec, int part, known_location, known_prefix):
    """The request's part named by spec ("uri", "args", "body", "header:NAME"); None for a missing header.

    part: part_kind(spec), or -1 to work it out; known_prefix: uri_prefix(known_location), which a
    route remembers for its location.
    """
    cdef int kind = part if part >= 0 else part_kind(spec)
    if kind == PART_BODY:
        return body
    if kind == PART_ARGS:
        return (<str>request.args).encode("latin-1", "replace")
    if kind == PART_HEADER:
        value = request.header(spec[7:].lower())
        return None if value is None else (<str>value).encode("latin-1", "replace")
    cdef str uri = request.uri
    location = request.location
    prefix = known_prefix if location is known_location else uri_prefix(location)
    # In a prefix location ending in "/", the URI part loses the prefix: `/kv/a` in `location /kv/` is `/a`.
    if prefix is not None and PyUnicode_Tailmatch(uri, prefix, 0, PY_SSIZE_T_MAX, -1):
        uri = uri[len(prefix) - 1:]
    return _utf8(uri)


cdef object _arg(str args, str name):
    for pair in args.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


cdef tuple build(int kind, request, bytes body, str spec, int part, known_location, known_prefix):
    """(op, payload, idempotent, hash key or None); ServiceRefused (dispatch.Refused) if it cannot go."""
    if kind == SVC_ECHO:
        value = part_of(request, body, spec, part, known_location, known_prefix)
        return (OP_ECHO, value or b"", True, None)
    if kind == SVC_KV:
        # kv hashes on the entry's key itself, whatever the balance template says (dispatch.py).
        key = part_of(request, body, "uri" if spec == "body" else spec, -1, known_location, known_prefix)
        if not key:
            raise ServiceRefused(400)
        method = request.method
        if _idempotent(method):
            return (OP_KV_GET, key, True, key)
        if method == "PUT" or method == "POST":
            ttl_text = request.header("x-ttl") or _arg(request.args, "ttl") or "0"
            if not ttl_text.isdigit() or int(ttl_text) > 0xFFFFFFFF:
                raise ServiceRefused(400)
            if len(key) > 1024:
                raise ServiceRefused(414)
            put = int(ttl_text).to_bytes(4, "little") + len(key).to_bytes(2, "little") + key + body
            return (OP_KV_PUT, put, False, key)
        if method == "DELETE":
            return (OP_KV_DELETE, key, False, key)
        raise ServiceRefused(405, b"Allow: GET, HEAD, PUT, POST, DELETE\r\n")
    if kind == SVC_STATIC:
        if not _idempotent(request.method):
            raise ServiceRefused(405, b"Allow: GET, HEAD\r\n")
        path = part_of(request, body, spec, part, known_location, known_prefix) or b"/"
        match = request.header("if-none-match")
        if match:
            path += b"\0" + (<str>match).encode("latin-1", "replace")
        return (OP_STATIC_GET, path, True, None)
    if kind == SVC_AUTH:
        value = part_of(request, body, spec, part, known_location, known_prefix)
        if value is None:
            raise ServiceRefused(401, b'WWW-Authenticate: Bearer\r\n')
        scheme, _, token = value.partition(b" ")
        if token and scheme.lower() == b"bearer":
            value = token.strip()
        return (OP_AUTH_VERIFY, value, True, None)
    if not spec.startswith("header:"):
        spec = WEBHOOK_HEADER
    sig = part_of(request, body, spec, -1, None, None)
    if sig is None:
        raise ServiceRefused(401)
    if len(sig) > 0xFFFF:
        raise ServiceRefused(400)
    return (OP_WEBHOOK_VERIFY, len(sig).to_bytes(2, "little") + sig + body, True, None)


cdef tuple read(int kind, request, int status, bytes payload):
    """(http status, body or None for an error page, content type, extra header lines)."""
    cdef Py_ssize_t type_len, etag_len, n
    if kind == SVC_ECHO:
        if status == ST_OK:
            return (200, payload, OCTETS, NO_EXTRA)
        return _failure(status)
    if kind == SVC_KV:
        if status == ST_OK:
            if _idempotent(request.method):
                return (200, payload, OCTETS, NO_EXTRA)
            return NO_CONTENT
        return _failure(status)
    if kind == SVC_STATIC:
        if status != ST_OK and status != ST_NOT_MODIFIED:
            return _failure(status)
        n = len(payload)
        # payload[i] of the twin raises IndexError past the end: a 502.
        if n < 1:
            return (502, None, None, NO_EXTRA)
        type_len = payload[0]
        if n < 2 + type_len:
            return (502, None, None, NO_EXTRA)
        ctype = payload[1:1 + type_len]
        etag_len = payload[1 + type_len]
        etag = payload[2 + type_len:2 + type_len + etag_len]
        content = payload[2 + type_len + etag_len:]
        extra = b"ETag: %s\r\n" % etag
        if status == ST_NOT_MODIFIED:
            return (304, b"", None, extra)
        return (200, content, ctype, extra)
    if kind == SVC_AUTH:
        if status == ST_OK:
            return (200, payload, JSON, NO_EXTRA)
        if status == ST_UNAUTHORIZED or status == ST_EXPIRED or status == ST_NOT_YET_VALID \
                or status == ST_BAD_REQUEST:
            return (401, None, None, b'WWW-Authenticate: Bearer error="invalid_token"\r\n')
        if status == ST_NO_KEY:
            return (503, None, None, NO_EXTRA)
        return _failure(status)
    if status == ST_OK:
        return NO_CONTENT
    if status == ST_UNAUTHORIZED:
        return (401, None, None, NO_EXTRA)     # a shared secret, not an HTTP auth scheme
    if status == ST_NO_KEY:
        return (503, None, None, NO_EXTRA)
    return _failure(status)


cdef int service_code(str service) except -1:
    code = _SERVICE_CODES.get(service)
    if code is None:
        raise KeyError(service)
    return code


def build_request(str service, request, bytes body, str spec):
    """(op, payload, idempotent, hash key or None) for a request to `service`; Refused if it cannot go."""
    return build(service_code(service), request, body, spec, -1, None, None)


def read_reply(str service, request, int status, bytes payload):
    """(http status, body or None for an error page, content type, extra header lines) for a reply."""
    return read(service_code(service), request, status, payload)
