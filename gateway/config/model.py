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
    proxy_protocol: bool = False   # ``listen ... proxy_protocol``: the same, per socket
    http2: bool = False       # ``listen ... http2`` (gateway/config/http2.py)
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
    verify: int = 0                       # ssl_verify_client: VERIFY_CLIENT's index
    verify_depth: int = 1
    client_certificate: str | None = None   # absolute paths
    trusted_certificate: str | None = None
    crl: str | None = None
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)   # directive -> file, line
    context: object = None                # the ssl.SSLContext, built when certificates exist
    h2_context: object = None             # the same offering h2 by ALPN, for HTTP/2 sockets


@dataclass
class AddHeader:
    name: str
    value: str                # template text
    always: bool = False


@dataclass(frozen=True)
class Syslog:
    """A ``syslog:server=...`` target of access_log or error_log (nginx's ngx_syslog_peer_t)."""

    server: str               # as written after server=: "127.0.0.1:514", "unix:/dev/log"
    family: int               # socket.AF_INET, AF_INET6 or AF_UNIX
    address: tuple | str      # what connect() takes: (host, port) or a unix socket path
    facility: int = 23        # local7
    severity: int = 6         # info (an error log's line takes its own level's severity)
    tag: str = "nginx"
    hostname: bool = True     # False with nohostname


@dataclass
class AccessLog:
    path: str                 # absolute, or the "syslog:..." text; "off" is an empty list
    format: str               # the log_format's template text
    escape: str = "default"   # log_format escape=: default, json or none
    buffer: int = 0           # buffer=SIZE: write when this much waits (0: the app's sweep writes)
    flush: float = 0.0        # flush=TIME: write lines older than this (with buffer=)
    condition: str | None = None   # if=CONDITION: a template; "" or "0" skips the line
    syslog: Syslog | None = None   # path is "syslog:...": one datagram per line, never buffered


@dataclass
class Return:
    code: int                 # 444 closes the connection, as nginx does
    text: str | None = None   # template: body text, or the URL for 301/302/303/307/308


@dataclass
class ErrorPage:
    """``error_page CODE ... [=[CODE]] URI`` (issue 11)."""

    codes: frozenset[int]
    uri: str                  # template: "/path", "@named" or an absolute URL
    overwrite: int = -1       # -1: keep the error's status; 0 ("="): the new answer's; else it


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
class AuthPart:
    """``unikernel_auth``: the request's credential checked by an auth pool before anything is sent."""

    pool: str
    token: str = "$http_authorization"       # a "Bearer " prefix is taken off
    claim_headers: list[tuple[str, str]] = field(default_factory=list)   # (header, claim)
    fail: str = "closed"                     # pool down or slow: closed = 503, open = go on
    timeout: float = 1.0
    file: str | None = None
    line: int | None = None


@dataclass
class CachePart:
    """``unikernel_cache``: responses kept in a kv pool, looked up while the other parts run."""

    pool: str
    key: str = "$scheme$host$request_uri"
    ttl: float = 60.0                        # when the response names no lifetime of its own
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    max_size: int = 512 * 1024               # largest response (head and body) stored
    fail: str = "bypass"                     # pool down or slow: bypass = go upstream, closed = 503
    timeout: float = 0.5
    file: str | None = None
    line: int | None = None


@dataclass
class BodyPart:
    """``unikernel_body``: the request body checked by a pool (webhook signatures) before it goes on."""

    pool: str
    signature: str = "$http_x_hub_signature_256"
    fail: str = "closed"                     # pool down or slow: closed = 503, open = go on
    timeout: float = 5.0
    file: str | None = None
    line: int | None = None


@dataclass
class LocationSettings:
    """Fully merged settings that apply to a request handled at this level."""

    # Content handlers: at most one of these is set (return wins, as the
    # rewrite phase runs before content).
    return_: Return | None = None
    proxy_pass: ProxyPass | None = None
    # resolver, resolver_timeout (gateway/config/resolver.py): for proxy_pass with variables.
    resolver: object | None = None
    resolver_timeout: float = 30.0
    unikernel_pass: UnikernelPass | None = None
    stub_status: bool = False                    # nginx's stub_status counters as text
    metrics: bool = False                        # Prometheus text (gateway/observe/metrics.py)
    status_json: bool = False                    # JSON status (gateway/observe/status_json.py)
    status_page: str | None = None               # live page (gateway/observe/status_page.py): URI it polls

    # realip (gateway/http/realip.py).
    set_real_ip_from: list[str] = field(default_factory=list)
    real_ip_header: str = "X-Real-IP"
    real_ip_recursive: bool = False

    # limit_req and limit_conn (gateway/config/limits.py): lists replaced by a level's own.
    limit_reqs: list = field(default_factory=list)
    limit_req_status: int = 503
    limit_req_log_level: str = "error"
    limit_req_dry_run: bool = False
    limit_conns: list = field(default_factory=list)
    limit_conn_status: int = 503
    limit_conn_log_level: str = "error"
    limit_conn_dry_run: bool = False

    # The access phase (gateway/config/access.py): allow/deny rules as (network or None for
    # "all", deny), auth_basic's realm (a template; None: off) and its file, satisfy.
    access_rules: list = field(default_factory=list)
    auth_basic: str | None = None
    auth_basic_user_file: str | None = None
    satisfy: str = "all"
    # auth_request (gateway/http/auth_request.py): the subrequest's URI (None: off) and the
    # auth_request_set (variable name, value template) pairs, a level's own list or its parent's.
    auth_request: str | None = None
    auth_request_set: list = field(default_factory=list)
    # mirror (gateway/config/mirror.py, gateway/http/mirror.py): the URIs of the background
    # subrequests started in the precontent phase (empty: none), and whether they get the body.
    mirrors: tuple = ()
    mirror_request_body: bool = True
    # valid_referers (gateway/config/referer.py): a ValidReferers, None: $invalid_referer is empty.
    valid_referers: object | None = None
    # secure_link, secure_link_md5 (templates) or secure_link_secret, merged as nginx does
    # (gateway/config/secure_link.py); read by $secure_link (gateway/http/secure_link.py).
    secure_link: str | None = None
    secure_link_md5: str | None = None
    secure_link_secret: str | None = None

    # Request parts worked on by unikernel pools before the content handler (inherited).
    unikernel_auth: AuthPart | None = None
    unikernel_cache: CachePart | None = None
    unikernel_body: BodyPart | None = None

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
    # The client certificate and the context's shape (gateway/config/proxy_ssl.py); paths
    # absolute.  nginx 1.22's default protocols for upstreams stop at TLS 1.2.
    proxy_ssl_certificate: str | None = None
    proxy_ssl_certificate_key: str | None = None
    proxy_ssl_passwords: tuple[bytes, ...] | None = None   # proxy_ssl_password_file's lines
    proxy_ssl_ciphers: str = "DEFAULT"
    proxy_ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    proxy_ssl_crl: str | None = None
    # Header directives of the proxy module (gateway/config/proxy_headers.py).
    proxy_hide_headers: tuple[str, ...] = ()     # lowercase
    proxy_pass_headers: tuple[str, ...] = ()     # lowercase
    proxy_ignore_headers: frozenset[str] = frozenset()   # lowercase
    proxy_redirect: object = "default"           # "default": nginx's implicit rule; None: off;
                                                 # else a tuple of proxy_headers.Rewrite
    proxy_cookie_domains: tuple | None = None    # Rewrite rules; None: off
    proxy_cookie_paths: tuple | None = None
    proxy_cookie_flags: tuple | None = None      # CookieFlags rules; None: off
    proxy_method: str | None = None              # template
    proxy_pass_request_headers: bool = True
    proxy_set_body: str | None = None            # template
    proxy_intercept_errors: bool = False
    # The proxy cache (gateway/config/proxy_cache.py, gateway/http/proxy_cache.py).
    proxy_cache: object = None                   # a proxy_cache.CachePath; None: off
    proxy_cache_key: str | None = None           # template; None: the proxied URL
    proxy_cache_valid: list = field(default_factory=list)    # (status or 0 for any, seconds)
    proxy_cache_methods: frozenset[str] = frozenset({"GET", "HEAD"})
    proxy_cache_bypass: list = field(default_factory=list)   # templates
    proxy_no_cache: list = field(default_factory=list)       # templates
    proxy_cache_min_uses: int = 1
    proxy_cache_use_stale: frozenset[str] = frozenset({"off"})
    proxy_cache_convert_head: bool = True
    proxy_cache_revalidate: bool = False

    # gzip and gzip_static (gateway/config/gzip.py, gateway/http/gzip.py).  Defaults are nginx's.
    gzip: bool = False
    gzip_types: tuple[str, ...] | None = ("text/html",)   # lowercase; None: "*", every type
    gzip_min_length: int = 20
    gzip_comp_level: int = 1
    gzip_window: int = 15                        # zlib's windowBits
    gzip_hash: int = 8                           # zlib's memLevel
    gzip_proxied: frozenset[str] = frozenset({"off"})
    gzip_vary: bool = False
    gzip_disable: tuple = ()                     # compiled caseless regexes
    gzip_disable_msie6: bool = False
    gzip_http_version: int = 11
    gzip_static: str = "off"                     # off, on, always

    # sub_filter (gateway/config/sub_filter.py, gateway/http/sub_filter.py): (search,
    # replacement) template texts, a level's own list or its parent's.  Defaults are nginx's.
    sub_filters: list = field(default_factory=list)
    sub_filter_once: bool = True
    sub_filter_types: tuple[str, ...] | None = ("text/html",)    # lowercase; None: "*"
    sub_filter_last_modified: bool = False

    # Responses.
    add_headers: list[AddHeader] = field(default_factory=list)
    add_trailers: list[AddHeader] = field(default_factory=list)
    # limit_rate, limit_rate_after (gateway/config/limit_rate.py): bytes, or a template's text.
    limit_rate: int | str = 0
    limit_rate_after: int | str = 0
    expires: object | None = None                # gateway.config.headers.Expires; None: off
    server_tokens: bool = True
    msie_padding: bool = True                    # pad error pages for MSIE and Chrome (nginx)
    # How a redirect to "/path" is made absolute (nginx's header filter, issue 11).
    absolute_redirect: bool = True
    port_in_redirect: bool = True
    server_name_in_redirect: bool = False

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
    if_modified_since: str = "exact"      # off, exact or before (ngx_http_not_modified_filter)
    max_ranges: int | None = None         # None: no limit; 0: no ranges, no Accept-Ranges
    random_index: bool = False                   # gateway/http/random_index.py, before index
    autoindex: bool = False                      # gateway/http/autoindex.py
    autoindex_format: str = "html"               # html, xml, json, jsonp
    autoindex_exact_size: bool = True
    autoindex_localtime: bool = False
    disable_symlinks: str = "off"                # off, on, if_not_owner (gateway/http/symlinks.py)
    disable_symlinks_from: str | None = None     # template of from=

    # Logging.
    access_logs: list[AccessLog] = field(default_factory=list)

    # Rewrite module (issue 11): this level's own script (never inherited), and flags.
    rewrite: object | None = None                # gateway.config.rewrite.Script
    rewrite_log: bool = False
    uninitialized_variable_warn: bool = True
    log_not_found: bool = True            # static: log open() failures of missing files

    # error_page (issue 11); "internal" is not inherited.
    error_pages: list[ErrorPage] = field(default_factory=list)
    recursive_error_pages: bool = False
    internal: bool = False


@dataclass
class Location:
    """One ``location`` block."""

    modifier: str             # "=", "^~", "" (prefix), "~", "~*", "@" (named)
    pattern: str
    settings: LocationSettings
    children: list[Location] = field(default_factory=list)
    regex: re.Pattern | None = None    # compiled for "~" and "~*"
    # The regexes of this location and of the regex locations around it, outermost first:
    # they set $1..$9 and named captures once this location is chosen.
    capture_regexes: tuple = ()
    limit_except: LimitExcept | None = None
    file: str | None = None
    line: int | None = None


@dataclass
class LimitExcept:
    """A location's ``limit_except`` block: the methods it spares and, for the others, the
    nameless location nginx makes of it (its location's name, the block's settings)."""

    methods: frozenset[str]       # the methods that keep the location's own settings
    location: Location


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
    underscores_in_headers: bool = False
    ignore_invalid_headers: bool = True
    tls: Tls = field(default_factory=Tls)
    http2: bool = False                  # ``http2 on`` (nginx 1.25's form of ``listen ... http2``)
    http2_max_concurrent_streams: int = 128
    capture_regexes: tuple = ()          # its server_name regexes, in order (they set captures)
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
    spares: int = 0                       # booted instances standing by (gateway/unikernel/pool.py)
    prestart: int = 1                     # paused QEMUs kept ready (gateway/unikernel/prestart.py)
    memory_mb: int = 16
    transport: str = "auto"               # auto, tap, socketpair
    accel: str = "auto"                   # auto, kvm, tcg
    balance: Balance = field(default_factory=Balance)
    settings: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    line: int | None = None


@dataclass
class MapBlock:
    """A ``map SOURCE $variable { ... }`` block (issue 11)."""

    source: str                           # template
    variable: str                         # without "$"
    default: str = ""                     # value template when nothing matches
    exact: dict[str, str] = field(default_factory=dict)          # lowercase key -> value
    # hostnames only: "*.a.com"/".a.com" keyed by the suffix "a.com" (wildcard_head, and
    # ".a.com" also in exact), "www.a.*" keyed by the prefix "www.a" (wildcard_tail)
    wildcard_head: dict[str, str] = field(default_factory=dict)
    wildcard_tail: dict[str, str] = field(default_factory=dict)
    regexes: list[tuple[re.Pattern, str]] = field(default_factory=list)   # in config order
    hostnames: bool = False
    volatile: bool = False
    file: str | None = None
    line: int | None = None


@dataclass
class SplitClients:
    """A ``split_clients SOURCE $variable { PERCENT VALUE; ... }`` block (issue 11)."""

    source: str                           # template hashed with MurmurHash2
    variable: str                         # without "$"
    # (bound, value): the first part whose bound is above the hash, or whose bound is 0
    # ("*"), gives the value; bounds are nginx's, cumulative over 0..0xffffffff
    parts: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class GeoBlock:
    """A ``geo [$address] $variable { ... }`` block (ngx_http_geo_module)."""

    source: str | None                    # variable holding the address, None: the client's
    variable: str                         # without "$"
    ranges: bool = False
    # networks: prefix length -> {address >> (width - length): value}; the 0 entry is the
    # default (nginx's empty one unless given)
    networks4: dict[int, dict[int, str]] = field(default_factory=dict)
    networks6: dict[int, dict[int, str]] = field(default_factory=dict)
    # ranges: sorted, disjoint (first, last, value) IPv4 spans, and the value outside them
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    default: str = ""
    # "proxy" networks as (4 or 6, address, prefix length): X-Forwarded-For is believed
    # from them (ngx_http_get_forwarded_addr)
    proxies: list[tuple[int, int, int]] = field(default_factory=list)
    proxy_recursive: bool = False


@dataclass
class Http:
    servers: list[Server] = field(default_factory=list)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    unikernels: dict[str, UnikernelPool] = field(default_factory=dict)
    log_formats: dict[str, str] = field(default_factory=dict)
    log_escapes: dict[str, str] = field(default_factory=dict)    # log_format name -> escape=
    # Variables the configuration defines: name -> MapBlock, SplitClients, GeoBlock, "set" for one
    # that only "set" gives a value, None for a named regex capture (issue 11).
    variables: dict[str, MapBlock | SplitClients | GeoBlock | str | None] = \
        field(default_factory=dict)
    # ``listen ... ssl`` sockets -> the SSLContext of their default server (SNI switches).
    tls_listens: dict[tuple[str, int], object] = field(default_factory=dict)
    # Sockets that speak HTTP/2: ALPN h2 over TLS, prior knowledge in cleartext.
    http2_listens: frozenset = frozenset()
    # proxy_cache_path zones: name -> gateway.config.proxy_cache.CachePath.
    cache_paths: dict = field(default_factory=dict)


@dataclass
class ErrorLog:
    path: str                 # absolute, "stderr", or the "syslog:..." text
    level: str = "error"
    syslog: Syslog | None = None


@dataclass
class Config:
    """The whole configuration, as loaded from one main file."""

    file: str
    prefix: str
    worker_processes: int = 1             # "auto" is resolved to the CPU count
    worker_connections: int = 512
    worker_rlimit_nofile: int | None = None   # each worker's open-files limit (soft and hard)
    worker_shutdown_timeout: float | None = None   # seconds a graceful stop waits for connections
    user: tuple[str, str | None] | None = None
    pid: str | None = None                # absolute path
    daemon: bool = True
    master_process: bool = True
    error_logs: list[ErrorLog] = field(default_factory=list)
    http: Http | None = None
    warnings: list[str] = field(default_factory=list)   # "accepted but not acted on", file:line
    text: str = ""                        # the effective config, for ``-T``
