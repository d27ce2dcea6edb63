# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of gateway/http/request.py: one request's state, as C fields.

Its own module so that the compiled proxy path, templates and scripts (proxyproto,
variables, rewrite) all read its fields at C level.
"""

cimport cython


cdef object header_value(list headers, bytes key, bint cookie):
    """Request.header() over the raw triples, without encoding the name per call."""
    cdef object found = None
    cdef tuple item
    for item in headers:
        if <bytes>item[0] == key:
            text = (<bytes>item[2]).decode("latin-1")
            if found is None:
                found = text
            else:
                found += ("; " if cookie else ", ") + text
    return found


@cython.freelist(64)     # one per request: reuse the memory of finished ones
cdef class Request:
    """Twin of gateway.http.request.Request: the same attributes, set at C level here.

    Header names arrive as ``(lower_name, name, value)`` byte triples from the
    head parser; ``header()`` looks them up by lowercase name.
    """

    def __init__(self, method, request_uri, uri, args, version, headers):
        self._init(method, request_uri, uri, args, version, headers)

    cdef _init(self, method, request_uri, uri, args, version, headers):
        self.method = method
        self.request_uri = request_uri
        self.uri = uri
        self.args = args
        self.version = version
        self.headers = headers
        self.host = ""
        self.scheme = "http"
        self.remote_addr = ""
        self.remote_port = 0
        self.server_addr = ""
        self.server_port = 0
        self.server = None
        self.server_name = ""
        self.location = None
        self.start_time = 0.0
        self.request_length = 0
        self.connection_id = 0
        self.connection_requests = 0
        self.status = 0
        self.body_bytes_sent = 0
        self.bytes_sent = 0
        self.proxy_host = ""
        self.upstream_addr = ""
        self.upstream_status = ""
        self.upstream_response_time = ""
        self.upstream_connect_time = ""
        self.upstream_header_time = ""

    def header(self, str lower_name):
        """The value of a request header (repeated ones joined as nginx does)."""
        return header_value(self.headers, lower_name.encode("latin-1"), lower_name == "cookie")

    @property
    def protocol(self):
        cdef int version = self.version
        return "HTTP/1.1" if version == 11 else ("HTTP/1.0" if version == 10 else "HTTP/2.0")
