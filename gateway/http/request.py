"""The per-request state shared by the server, the proxy, variables and logs."""

from __future__ import annotations


class Request:
    """One parsed client request plus what happened to it so far.

    Header names arrive as ``(lower_name, name, value)`` byte triples from the
    head parser; ``header()`` looks them up by lowercase name.
    """

    __slots__ = (
        "method", "request_uri", "uri", "args", "version", "headers",
        "host", "scheme", "remote_addr", "remote_port", "server_addr", "server_port",
        "server", "server_name", "location", "start_time", "request_length",
        "connection_id", "connection_requests", "ssl_object",
        # filled while answering
        "status", "body_bytes_sent", "bytes_sent", "proxy_host",
        "upstream_addr", "upstream_status", "upstream_response_time",
        "upstream_connect_time", "upstream_header_time",
        # Set only by requests that use them (read with getattr), so that others pay nothing:
        # the configuration's variables (map, set, captures) read or set so far,
        # "last" or "break" once a rewrite changed the URI ("args" once "set $args" ran),
        # and $unikernel_cache_status.
        "vars", "rewritten", "cache_status",
        # the connection's own address and port once realip replaced them ($realip_remote_*)
        "realip_addr", "realip_port",
        # called once when the request ends: limit_conn gives its counts back
        "cleanup",
        # the connection's PROXY header, on a ``listen ... proxy_protocol`` socket
        "proxy_protocol",
        # the client connection ($connection_time, $tcpinfo_*): dropped when the request is
        # logged, so that it and the connection's own reference make no cycle that outlives it
        "connection",
        # $pipe: True when read from bytes left after the previous request
        "pipelined",
        # each try's (bytes received, bytes sent, response length), set with $upstream_status
        "upstream_bytes",
        # True once a field name with "_" was kept (gateway/http/header_names.py): $http_*
        # then matches "-" and "_" alike, as nginx does
        "underscored_names",
    )

    def __init__(self, method, request_uri, uri, args, version, headers):
        self.method = method                  # str, e.g. "GET"
        self.request_uri = request_uri        # str, the target as received
        self.uri = uri                        # str, decoded and normalised path ($uri)
        self.args = args                      # str, query string without "?" ("" if none)
        self.version = version                # 10, 11, or 20 (HTTP/2, gateway/http/http2.py)
        self.headers = headers                # list of (lower_name, name, value) bytes
        self.host = ""
        self.scheme = "http"
        self.ssl_object = None                # the ssl.SSLObject on a TLS connection
        self.remote_addr = ""
        self.remote_port = 0
        self.server_addr = ""
        self.server_port = 0
        self.server = None                    # config.model.Server
        self.server_name = ""
        self.location = None                  # config.model.Location
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

    def header(self, lower_name: str) -> str | None:
        """The value of a request header (repeated ones joined as nginx does)."""
        # A scan beats building a dict: requests carry a handful of headers and
        # the hot path asks for one or two of them.
        key = lower_name.encode("latin-1")
        found = None
        for lower, _name, value in self.headers:
            if lower == key:
                text = value.decode("latin-1")
                if found is None:
                    found = text
                else:
                    found += ("; " if lower_name == "cookie" else ", ") + text
        return found

    @property
    def protocol(self) -> str:
        version = self.version
        return "HTTP/1.1" if version == 11 else ("HTTP/1.0" if version == 10 else "HTTP/2.0")
