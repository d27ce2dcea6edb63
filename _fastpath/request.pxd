"""C interface of _fastpath/request.pyx, for modules that cimport it (proxyproto, variables, rewrite)."""


cdef class Request:
    cdef public object method, request_uri, uri, args, headers
    cdef public object host, scheme, remote_addr, server_addr
    cdef public object server, server_name, location
    cdef public object proxy_host
    # Numbers as C fields: no int or float object made, kept or freed per request.
    cdef public int version, remote_port, server_port, status
    cdef public double start_time
    cdef public long long request_length, connection_id, connection_requests
    cdef public long long body_bytes_sent, bytes_sent
    cdef public object upstream_addr, upstream_status, upstream_response_time
    cdef public object upstream_connect_time, upstream_header_time
    # The configuration's variables (map, set, captures) read or set so far: None, as
    # every object field, when tp_new makes the request, so no per-request work here.
    cdef public object vars
    # "last", "break" or "args" once a script changed the URI or args (gateway/http/
    # rewrite.py), else None.
    cdef public object rewritten
    # $unikernel_cache_status (HIT, MISS, BYPASS) of a composed location, else None.
    cdef public object cache_status
    # The connection's own address and port once realip replaced them, else None.
    cdef public object realip_addr, realip_port
    cdef public object ssl_object   # None (tp_new's value) unless the connection is TLS
    # Called once when the request ends (limit_conn gives its counts back), else None.
    cdef public object cleanup
    cdef public object proxy_protocol   # the connection's PROXY header, or None
    # The client connection ($connection_time, $tcpinfo_*): dropped when the request is
    # logged, so that it and the connection's own reference make no cycle that outlives it.
    cdef public object connection
    cdef public bint pipelined      # $pipe: read from bytes left after the previous request
    # True once a field name with "_" was kept (gateway/http/header_names.py): $http_*
    # then matches "-" and "_" alike, as nginx does.
    cdef public bint underscored_names
    # Each try's (bytes received, bytes sent, response length), set with $upstream_status.
    cdef public object upstream_bytes
    # The request line's method and target as received (None when not kept): what
    # method.encode() and request_uri re-encoded would give, without the work.
    cdef object raw_method, raw_target

    cdef _init(self, method, request_uri, uri, args, version, headers)


cdef object header_value(list headers, bytes key, bint cookie)
