"""Typed configuration: what the parser's builder produces and the server reads.

Every value here is final: inheritance between http, server and location
levels is already resolved (nginx's merge rules), relative paths are already
resolved against the prefix, sizes are bytes and times are seconds.
Templates (values that may contain ``$variables``) stay as text here; the
server compiles them once at load with ``gateway.http.variables``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Listen:
    """One ``listen`` directive."""

    host: str                 # "0.0.0.0" for "*"/port only, "::" for "[::]"
    port: int
    default_server: bool = False
    reuseport: bool = False
    backlog: int = 511        # nginx's NGX_LISTEN_BACKLOG on Linux
    ipv6only: bool = True
    ssl: bool = False         # ``listen ... ssl``: set on every listen of a socket if on one
    file: str | None = None
    line: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        """The socket this listen binds: servers sharing it share the socket."""
        return (self.host, self.port)


@dataclass
class Certificate:
    """One ``ssl_certificate`` with its ``ssl_certificate_key`` (paths are absolute)."""

    cert: str
    key: str
    file: str | None = None
    line: int | None = None
    key_file: str | None = None
    key_line: int | None = None


@dataclass
class Tls:
    """The ``ssl_*`` settings of one server, merged with the http level as nginx does."""

    certificates: list[Certificate] = field(default_factory=list)
    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str = "HIGH:!aNULL:!MD5"
    prefer_server_ciphers: bool = False
    session_cache: str = "none"           # "off", "none", "builtin[:size]", "shared:NAME:size"
    session_timeout: float = 300.0
    session_tickets: bool = True
    dhparam: str | None = None
    ecdh_curve: str = "auto"
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)   # directive -> file, line
    context: object = None                # the ssl.SSLContext, built when certificates exist


@dataclass
class AddHeader:
    name: str
    value: str                # template text
    always: bool = False


@dataclass
class AccessLog:
    path: str                 # absolute; "off" is represented by an empty list
    format: str               # the log_format's template text


@dataclass
class Return:
    code: int                 # 444 closes the connection, as nginx does
    text: str | None = None   # template: body text, or the URL for 301/302/303/307/308


@dataclass
class ProxyPass:
    """A ``proxy_pass`` target."""

    url: str                  # as written, e.g. "http://backend/v1/"
    upstream: str             # name of an ``Upstream`` in ``Http.upstreams`` (implicit
                              # upstreams for host:port targets are created by the builder)
    uri: str | None           # URI part ("/v1/"), None when the URL has none
    proxy_host: str           # the $proxy_host value: "backend" or "127.0.0.1:8080"
    has_variables: bool = False
    ssl: bool = False         # "https://": TLS to the upstream
    tls: object = None        # gateway.http.tls.UpstreamTls when ssl


@dataclass
class UnikernelPass:
    """A ``unikernel_pass`` target (issue 5)."""

    pool: str
    payload: str = "uri"      # "uri", "body", "header:NAME" or "args"


@dataclass
class LocationSettings:
    """Fully merged settings that apply to a request handled at this level."""

    # Content handlers: at most one of these is set (return wins, as the
    # rewrite phase runs before content).
    return_: Return | None = None
    proxy_pass: ProxyPass | None = None
    unikernel_pass: UnikernelPass | None = None

    # Proxying.  Defaults are nginx's.
    proxy_set_headers: list[tuple[str, str]] = field(default_factory=lambda: [
        ("Host", "$proxy_host"), ("Connection", "close")])
    proxy_http_version: str = "1.0"
    proxy_connect_timeout: float = 60.0
    proxy_read_timeout: float = 60.0
    proxy_send_timeout: float = 60.0
    proxy_buffering: bool = True
    proxy_request_buffering: bool = True
    proxy_next_upstream: frozenset[str] = frozenset({"error", "timeout"})
    proxy_next_upstream_tries: int = 0          # 0 = unlimited
    proxy_next_upstream_timeout: float = 0.0    # 0 = unlimited
    proxy_request_timeout: float = 0.0          # ours: whole exchange, until the response head; 0 = none
    proxy_pass_request_body: bool = True
    proxy_ssl_verify: bool = False
    proxy_ssl_trusted_certificate: str | None = None   # absolute
    proxy_ssl_server_name: bool = False
    proxy_ssl_name: str | None = None           # template; None: the proxy_pass host

    # Responses.
    add_headers: list[AddHeader] = field(default_factory=list)
    server_tokens: bool = True

    # Client side.
    client_max_body_size: int = 1024 * 1024     # 0 = unlimited
    client_body_timeout: float = 60.0
    keepalive_timeout: float = 75.0              # 0 disables keep-alive
    keepalive_requests: int = 1000

    # Static files.
    root: str = "html"                           # absolute after building
    alias: str | None = None
    index: list[str] = field(default_factory=lambda: ["index.html"])
    try_files: list[str] | None = None
    types: dict[str, str] = field(default_factory=dict)   # extension -> MIME type
    default_type: str = "text/plain"
    etag: bool = True

    # Logging.
    access_logs: list[AccessLog] = field(default_factory=list)


@dataclass
class Location:
    """One ``location`` block."""

    modifier: str             # "=", "^~", "" (prefix), "~", "~*", "@" (named)
    pattern: str
    settings: LocationSettings
    children: list[Location] = field(default_factory=list)
    regex: re.Pattern | None = None    # compiled for "~" and "~*"
    file: str | None = None
    line: int | None = None


@dataclass
class Server:
    """One ``server`` block."""

    listens: list[Listen]
    server_names: list[str]              # as written: "example.com", "*.example.com", "~^re$", "_"
    locations: list[Location]            # top level; nested ones are in ``children``
    settings: LocationSettings           # server-level merge, used when no location matches
    client_header_timeout: float = 60.0
    client_header_buffer_size: int = 1024
    large_client_header_buffers: tuple[int, int] = (4, 8192)   # (number, size)
    tls: Tls = field(default_factory=Tls)
    file: str | None = None
    line: int | None = None


@dataclass
class UpstreamServer:
    """One ``server`` line inside ``upstream``, one per resolved address."""

    name: str                 # as written: "127.0.0.1:8080" or "app.local:8080"
    host: str                 # resolved address
    port: int
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    max_conns: int = 0        # 0 = unlimited
    backup: bool = False
    down: bool = False


@dataclass
class Balance:
    """The balancing method chosen in an ``upstream`` block."""

    method: str = "round_robin"   # round_robin, least_conn, ip_hash, hash, random, least_time
    key: str | None = None        # template text for ``hash``
    consistent: bool = False      # ``hash KEY consistent``
    two: bool = False             # ``random two``
    two_method: str = "least_conn"
    least_time: str = "header"    # ``least_time header|last_byte``


@dataclass
class HealthCheck:
    """``health_check interval= uri= fails= passes=`` (active probes)."""

    interval: float = 5.0
    uri: str = "/"
    fails: int = 1
    passes: int = 1
    timeout: float = 1.0


@dataclass
class Upstream:
    name: str
    servers: list[UpstreamServer]
    balance: Balance = field(default_factory=Balance)
    keepalive: int = 0                    # idle connections cached per worker
    # Shorter than nginx's 60 s on purpose: idle connections must be dropped by us
    # before a backend with a short idle timeout (gunicorn 2 s, Node 5 s) drops them.
    keepalive_timeout: float = 4.0
    keepalive_requests: int = 1000
    health_check: HealthCheck | None = None
    implicit: bool = False                # made from a proxy_pass host:port
    file: str | None = None
    line: int | None = None


@dataclass
class UnikernelPool:
    """A ``unikernel NAME { ... }`` block (issue 5)."""

    name: str
    image: str
    min_instances: int = 1
    max_instances: int = 1
    memory_mb: int = 16
    transport: str = "auto"               # auto, tap, socketpair
    accel: str = "auto"                   # auto, kvm, tcg
    balance: Balance = field(default_factory=Balance)
    settings: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    line: int | None = None


@dataclass
class Http:
    servers: list[Server] = field(default_factory=list)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    unikernels: dict[str, UnikernelPool] = field(default_factory=dict)
    log_formats: dict[str, str] = field(default_factory=dict)
    # ``listen ... ssl`` sockets -> the SSLContext of their default server (SNI switches).
    tls_listens: dict[tuple[str, int], object] = field(default_factory=dict)


@dataclass
class ErrorLog:
    path: str                 # absolute, or "stderr"
    level: str = "error"


@dataclass
class Config:
    """The whole configuration, as loaded from one main file."""

    file: str
    prefix: str
    worker_processes: int = 1             # "auto" is resolved to the CPU count
    worker_connections: int = 512
    user: tuple[str, str | None] | None = None
    pid: str | None = None                # absolute path
    daemon: bool = True
    master_process: bool = True
    error_logs: list[ErrorLog] = field(default_factory=list)
    http: Http | None = None
    warnings: list[str] = field(default_factory=list)   # "accepted but not acted on", file:line
    text: str = ""                        # the effective config, for ``-T``
