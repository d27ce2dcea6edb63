"""HTTP/2 settings (ngx_http_v2_module): ``listen ... http2``, ``http2 on``, the http2_* directives.

As in nginx, HTTP/2 belongs to a listening socket: ``http2`` on any ``listen`` of an
address (or ``http2 on`` in any server listening there, nginx 1.25's form) makes the socket
offer h2 by ALPN over TLS and take h2c with prior knowledge in cleartext.
"""

from __future__ import annotations

from gateway.config import values
from gateway.errors import ConfigError

# nginx 1.22's "the ... directive is obsolete, use the ... directive instead".
OBSOLETE = {
    "http2_idle_timeout": "keepalive_timeout",
    "http2_max_requests": "keepalive_requests",
    "http2_max_field_size": "large_client_header_buffers",
    "http2_max_header_size": "large_client_header_buffers",
    "http2_recv_timeout": "client_header_timeout",
}

DEFAULT_MAX_STREAMS = 128


def level(block, warnings: list[str]) -> dict:
    """The http2 settings set directly at the http or a server level."""
    own: dict = {}
    for d in block:
        name, a, f, ln = d.name, d.args, d.file, d.line
        if name == "http2":
            own["http2"] = values.flag(a[0])
        elif name == "http2_max_concurrent_streams":
            own["http2_max_concurrent_streams"] = values.number(name, a[0], f, ln)
        elif name in OBSOLETE:
            warnings.append(f'the "{name}" directive is obsolete, use the "{OBSOLETE[name]}" '
                            f"directive instead in {f}:{ln}")
    return own


def apply(server, http_own: dict, server_own: dict) -> None:
    """Give a server its merged http2 settings."""
    merged = {**http_own, **server_own}
    server.http2 = merged.get("http2", False)
    server.http2_max_concurrent_streams = merged.get("http2_max_concurrent_streams",
                                                     DEFAULT_MAX_STREAMS)


def sockets(servers) -> frozenset:
    """The listen keys that speak HTTP/2: ORed over every listen and server of a socket."""
    keys = frozenset(listen.key for server in servers for listen in server.listens
                     if listen.http2 or getattr(server, "http2", False))
    for server in servers:
        for listen in server.listens:
            if listen.key in keys and listen.proxy_protocol:
                # The PROXY header reader hands over to an HTTP/1.1 connection only.
                raise ConfigError('"listen ... http2 proxy_protocol" is not supported by this '
                                  'gateway', listen.file, listen.line)
    return keys


def add_alpn(http, server_context, alpn) -> None:
    """Offer h2 by ALPN on TLS sockets that speak HTTP/2, and in the contexts SNI may
    switch to there (OpenSSL selects ALPN with the context the SNI callback chose)."""
    h2_keys = http.http2_listens
    for key, ctx in http.tls_listens.items():
        if key in h2_keys:
            ctx.set_alpn_protocols(alpn)
    built: dict = {}
    for server in http.servers:
        tls = server.tls
        if tls.context is None or not any(listen.key in h2_keys for listen in server.listens):
            continue
        ctx = built.get(id(tls.context))
        if ctx is None:
            ctx = built[id(tls.context)] = server_context(tls)
            ctx.set_alpn_protocols(alpn)
        tls.h2_context = ctx

