"""C interface of _fastpath/proxyproto.pyx, for modules that cimport it (ukpath)."""

cdef bint conn_body_pending(conn) except -1
cdef int conn_set_handler(conn, handler) except -1
cdef conn_send_simple(conn, int status, body, content_type, extra, add_headers)
