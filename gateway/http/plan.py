"""Per-location plans: everything about answering a request decided at config load."""

from __future__ import annotations

from gateway.config import model
from gateway.http.realip import RealIp
from gateway.http.request_body import reads_body
from gateway.http.variables import Template, compile_template

# RFC 9110 section 7.6.1 hop-by-hop fields, plus the ones nginx never forwards.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"expect", b"content-length",
})

# nginx's proxy_hide_header defaults: replaced by our own or internal to nginx.
HIDDEN_RESPONSE = frozenset({
    b"date", b"server", b"x-pad", b"x-accel-expires", b"x-accel-redirect",
    b"x-accel-limit-rate", b"x-accel-buffering", b"x-accel-charset",
    b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection",
    b"upgrade", b"trailer",
})

# Methods nginx does not retry once sent (proxy_next_upstream non_idempotent).
NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})

UPSTREAM_STATUS_CONDITIONS = {
    500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504",
    403: "http_403", 404: "http_404", 429: "http_429",
}


class ProxyPlan:
    """How one location proxies: upstream, rewritten request line and headers."""

    __slots__ = (
        "upstream", "proxy_host", "uri_replacement", "prefix_length", "http_version",
        "set_headers", "dropped", "connect_timeout", "read_timeout", "send_timeout",
        "next_upstream", "tries", "next_upstream_timeout", "keepalive", "pass_body",
        "key_template", "has_variables", "request_timeout", "tls",
        "response_filter", "intercept", "method", "set_body", "pass_headers", "python_only",
        "paced", "trailers", "waits_body", "cache",
    )

    def __init__(self, location: model.Location | None, settings: model.LocationSettings,
                 upstream, expires=None):
        target = settings.proxy_pass
        self.upstream = upstream
        self.proxy_host = target.proxy_host
        self.has_variables = target.has_variables
        self.tls = target.tls            # UpstreamTls for https://, else None
        self.uri_replacement = target.uri
        # A prefix location's matched part is replaced by the URI part (nginx).
        if location is not None and location.modifier in ("", "^~", "="):
            self.prefix_length = len(location.pattern)
        else:
            self.prefix_length = 0
        self.http_version = b"HTTP/1.1" if settings.proxy_http_version == "1.1" else b"HTTP/1.0"
        set_headers = []
        dropped = set(HOP_BY_HOP)
        connection_value = "close"
        for name, value in settings.proxy_set_headers:
            lower = name.lower().encode("latin-1")
            dropped.add(lower)
            if lower == b"connection":
                connection_value = value
            if value == "":
                continue   # an empty value removes the header (nginx)
            set_headers.append((name.encode("latin-1"), compile_template(value)))
        self.set_headers = set_headers
        self.dropped = frozenset(dropped)
        self.connect_timeout = settings.proxy_connect_timeout
        self.read_timeout = settings.proxy_read_timeout
        self.send_timeout = settings.proxy_send_timeout
        self.next_upstream = settings.proxy_next_upstream
        self.tries = settings.proxy_next_upstream_tries
        self.next_upstream_timeout = settings.proxy_next_upstream_timeout
        self.request_timeout = settings.proxy_request_timeout
        self.pass_body = settings.proxy_pass_request_body
        # Upstream keep-alive needs HTTP/1.1 and no "Connection: close" (nginx docs).
        self.keepalive = (upstream.config.keepalive > 0 and self.http_version == b"HTTP/1.1"
                          and connection_value.lower() != "close")
        key = upstream.balancer.key_template
        self.key_template = compile_template(key) if key else None
        # Response header edits (gateway/http/headers.py): None when there are none.
        from gateway.http.headers import ResponseFilter
        edits = ResponseFilter(settings, expires, location.pattern if location is not None else None)
        self.response_filter = edits if edits.needed else None
        # proxy_intercept_errors: the statuses that get the location's error_page instead.
        self.intercept = frozenset(code for page in settings.error_pages for code in page.codes) \
            if settings.proxy_intercept_errors and settings.error_pages else None
        # proxy_method, proxy_pass_request_headers, proxy_set_body: the request sent upstream
        # is built by the pure-Python exchange (gateway/http/proxy.py) only.
        self.method = compile_template(settings.proxy_method) if settings.proxy_method else None
        self.set_body = compile_template(settings.proxy_set_body) \
            if settings.proxy_set_body is not None else None
        if self.set_body is not None:
            self.pass_body = False      # the client's body is read, never sent (nginx)
        self.pass_headers = settings.proxy_pass_request_headers
        # limit_rate (gateway/http/limit_rate.py): paced by the pure-Python exchange; nginx
        # never paces unbuffered proxying.
        self.paced = bool(settings.limit_rate) and settings.proxy_buffering
        # add_trailer (gateway/http/trailers.py): the pure-Python exchange frames the body.
        self.trailers = bool(settings.add_trailers)
        # $request_body in a proxy_set_header: the body is read whole first (request_body.py).
        self.waits_body = any(reads_body(template) for _, template in set_headers)
        # proxy_cache (gateway/http/proxy_cache.py): only its locations leave the compiled path.
        self.cache = None
        if settings.proxy_cache is not None:
            from gateway.http.proxy_cache import CACHE_DROPPED, CachePlan
            self.cache = CachePlan(settings, target.ssl)
            self.dropped = self.dropped | CACHE_DROPPED
        self.python_only = self.method is not None or self.set_body is not None \
            or not self.pass_headers or self.paced or self.trailers or self.waits_body \
            or self.cache is not None

    def upstream_uri(self, request) -> str:
        """The request target sent upstream, per nginx's proxy_pass URI rules."""
        if self.uri_replacement is None:
            return request.request_uri
        tail = request.uri[self.prefix_length:]
        if "%" in request.request_uri.partition("?")[0]:
            # nginx re-escapes the decoded URI only when it arrived %-encoded (quoted_uri),
            # and only the part after the location prefix.
            tail = escape_uri(tail)
        uri = self.uri_replacement + tail
        return uri + "?" + request.args if request.args else uri


def escape_uri(uri: str) -> str:
    """Re-escape a decoded path the way nginx's NGX_ESCAPE_URI does."""
    if uri.isascii() and uri.isprintable() and " " not in uri and "#" not in uri \
            and "?" not in uri and "%" not in uri:
        return uri
    out = []
    for byte in uri.encode("utf-8", "surrogateescape"):
        if byte <= 0x20 or byte >= 0x7f or byte in b'"#%?':
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


class WrappingPlan:
    """A plan that does something before another plan's content (``content``): a location's
    rewrite script, its access phases, its mirrors, ``internal``. What the dispatcher, the
    access logs and the metrics read of a plan is the content's."""

    __slots__ = ("location", "settings", "kind", "content", "add_headers", "access_logs", "meter",
                 "proxy", "unikernel", "return_code", "return_text")

    def __init__(self, kind: str, content, settings):
        self.location = content.location
        self.settings = settings
        self.kind = kind
        self.content = content
        self.add_headers = content.add_headers
        self.access_logs = content.access_logs
        self.meter = content.meter
        self.proxy = self.unikernel = self.return_text = None
        self.return_code = 0


class LocationPlan:
    """What to do for requests that end in one location (or a server's fallback)."""

    __slots__ = ("location", "settings", "kind", "return_code", "return_text",
                 "proxy", "add_headers", "access_logs", "records_upstream", "meter", "unikernel",
                 "compose", "real_ip", "post_read_real_ip", "gzip", "page", "expires",
                 "variable_proxy")

    def __init__(self, location, settings: model.LocationSettings, upstreams, access_logs):
        self.location = location
        self.settings = settings
        self.proxy = None
        self.unikernel = None
        self.return_code = 0
        self.return_text: Template | None = None
        self.expires = None
        if settings.expires is not None:
            from gateway.http.headers import ExpiresPlan   # only configs with expires load it
            self.expires = ExpiresPlan(settings.expires)
        self.variable_proxy = None
        if settings.return_ is not None:
            self.kind = "return"
            self.return_code = settings.return_.code
            if settings.return_.text is not None:
                self.return_text = compile_template(settings.return_.text)
        elif settings.proxy_pass is not None and settings.proxy_pass.has_variables:
            # A URL with variables: a plain proxy plan per upstream reached (proxy_vars.py).
            from gateway.http.proxy_vars import VariableProxy
            self.kind = "proxy_vars"
            self.variable_proxy = VariableProxy(settings.proxy_pass.url)
        elif settings.proxy_pass is not None:
            self.kind = "proxy"
            self.proxy = ProxyPlan(location, settings, upstreams[settings.proxy_pass.upstream],
                                   self.expires)
        elif settings.unikernel_pass is not None:
            self.kind = "unikernel"
            self.unikernel = settings.unikernel_pass
        elif settings.stub_status:
            self.kind = "stub_status"
        elif settings.metrics:
            self.kind = "metrics"
        elif settings.status_json:
            self.kind = "status_json"
        elif settings.status_page is not None:
            self.kind = "status_page"
        else:
            self.kind = "static"
        self.page = None
        if self.kind == "status_page":       # built once here, at config load, not per request
            from gateway.observe import status_page
            self.page = status_page.page(settings.status_page)
        self.add_headers = [(h.name.encode("latin-1"), compile_template(h.value), h.always)
                            for h in settings.add_headers]
        if self.expires is not None and self.proxy is None:
            # Answers made here carry no Expires or Cache-Control of their own: nginx's
            # expires adds both, before add_header's (headers.static_add_headers relies on it).
            self.add_headers = self.expires.add_header_entries() + self.add_headers
        self.access_logs = access_logs
        # Whether the proxy formats its tries for $upstream_addr and the like: a third of a
        # logged request's CPU, so only for logs whose format shows them.
        self.records_upstream = any(fmt.uses_upstream_tries for _, fmt in access_logs)
        self.gzip = None
        if settings.sub_filters:
            # sub_filter takes the gzip slot: its exchange filters, then compresses if gzip is on.
            from gateway.http.sub_filter import SubFilterPlan
            self.gzip = SubFilterPlan(settings)
        elif settings.gzip:
            from gateway.http.gzip import plan_for    # only configs with gzip load it
            self.gzip = plan_for(settings)
        self.meter = None       # metrics' LocationMeter (gateway/observe/metrics.py), if counted
        # realip runs in nginx's post-read phase with a server's settings, and in its preaccess
        # phase with a location's, which a `return` (rewrite phase) never reaches.
        self.post_read_real_ip = RealIp(settings.set_real_ip_from, settings.real_ip_header,
                                        settings.real_ip_recursive) if settings.set_real_ip_from else None
        self.real_ip = self.post_read_real_ip if self.kind != "return" else None
        self.compose = None
        # Parts for unikernel pools run before content, as nginx's access phase; `return` runs earlier.
        if self.kind != "return" and (settings.unikernel_auth or settings.unikernel_cache
                                      or settings.unikernel_body):
            from gateway.unikernel.compose import ComposePlan   # only configs with parts load it
            self.compose = ComposePlan(self, settings)
            self.kind = "compose"
