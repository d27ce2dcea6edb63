"""``proxy_pass`` with variables (``proxy_pass http://app/$1;``), as nginx evaluates it.

The URL is rendered per request.  Its host names an ``upstream`` block (or the host:port of
another ``proxy_pass``), or is an IP address, or is a name the location's ``resolver`` is
asked for (gateway/http/resolver.py; without one: 502 and nginx's ``no resolver defined to
resolve``).  A URI part in the rendered URL is sent as it is, the request's arguments not
added; without one the request's own URI goes (ngx_http_proxy_create_request with
``ctx->vars.uri``).

Each location keeps one plain proxy plan per upstream it reached ("twins"), so the request
is then proxied by the ordinary (compiled) exchange; locations without variables never come here.
"""

from __future__ import annotations

import copy
import ipaddress

from gateway.config.model import Upstream, UpstreamServer
from gateway.http import rewrite
from gateway.http.held_body import BodyHolder
from gateway.http.plan import ProxyPlan, escape_uri
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log

# Where the rendered URI part waits in request.vars for upstream_uri().
_URI = " proxy_uri"
# Twins kept per location: bounds what a URL made of client input can allocate.
MAX_TWINS = 256


class VariableProxyPlan(ProxyPlan):
    """A proxy plan whose request target comes from the rendered proxy_pass URL."""

    __slots__ = ()
    follows_rewrites = True     # upstream_uri() sends a rewritten $uri itself

    def __init__(self, location, settings, upstream, proxy_host: str, expires=None):
        super().__init__(location, settings, upstream, expires)
        self.proxy_host = proxy_host
        # Not None, so that the compiled exchange always asks upstream_uri() below.
        self.uri_replacement = ""
        self.prefix_length = 0

    def upstream_uri(self, request) -> str:
        uri = request.vars.get(_URI) if getattr(request, "vars", None) else None
        if uri:
            return uri
        if not getattr(request, "rewritten", None):
            return request.request_uri
        path = escape_uri(request.uri)
        return path + "?" + request.args if request.args else path


class VariableProxy:
    """The part of a location plan that turns its URL template into a twin per request."""

    __slots__ = ("template", "twins")

    def __init__(self, url: str):
        self.template = compile_template(url)
        self.twins: dict = {}

    def plan_for(self, app, plan, request, resolved=None):
        """(the plain proxy plan for this request, None), (None, nginx's error and status), or
        (None, Lookup) when a name must be resolved first: asked again then with
        ``resolved``, the addresses found."""
        url = self.template.render(request)
        rest = url[7:] if url[:7].lower() == "http://" else url
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
        authority, uri = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
        values = getattr(request, "vars", None)
        if values is None:
            values = request.vars = {}
        values[_URI] = uri
        twin = self.twins.get(authority)
        if twin is not None:
            return twin, None
        if not authority:
            return None, (f'invalid URL prefix in "{url}"', 500)
        upstream, proxy_host, port = _upstream(app, authority)
        key = authority
        if upstream is None:
            config = plan.settings.resolver
            if config is None or port is None:
                return None, (f"no resolver defined to resolve {proxy_host}", 502)
            resolver = app.resolver(config)
            addresses = resolved or resolver.cached(proxy_host)
            if addresses is None:
                return None, Lookup(resolver, proxy_host, plan.settings.resolver_timeout)
            key = (authority, tuple(addresses))
            twin = self.twins.get(key)
            if twin is not None:
                return twin, None
            upstream = _resolved_upstream(app, resolver, proxy_host, port, addresses)
            if port != 80:
                proxy_host = f"{proxy_host}:{port}"
        twin = copy.copy(plan)
        twin.kind = "proxy"
        twin.proxy = VariableProxyPlan(plan.location, plan.settings, upstream, proxy_host,
                                       plan.expires)
        if len(self.twins) >= MAX_TWINS:
            self.twins.pop(next(iter(self.twins)))     # the oldest: resolutions change
        self.twins[key] = twin
        return twin, None


class Lookup:
    """What a request waits for before it is proxied: a name its location's resolver asks."""

    __slots__ = ("resolver", "name", "timeout")

    def __init__(self, resolver, name: str, timeout: float):
        self.resolver = resolver
        self.name = name
        self.timeout = timeout


class Resolving(BodyHolder):
    """The connection's handler while its request waits for the resolver: a body sent meanwhile
    is kept for the upstream; then the request is proxied to the addresses found, or answered
    502 with nginx's ``NAME could not be resolved (CODE: TEXT)`` (timeouts included)."""

    __slots__ = ("app", "plan", "redirects", "waiter")

    def __init__(self, app, conn, request, plan, redirects, lookup: Lookup):
        self.app = app
        self.plan = plan
        self.redirects = redirects
        self.hold(conn, request)
        self.waiter = lookup.resolver.resolve(lookup.name, lookup.timeout, self._resolved)

    def _resolved(self, addresses, code):
        if self.done:
            return
        conn, request, plan = self.conn, self.request, self.plan
        pieces = self.release()
        try:
            if addresses is None:
                from gateway.http.resolver import strerror
                name = self.waiter.lookup.name
                log.error(f"*{request.connection_id} "
                          f"{name} could not be resolved ({code}: {strerror(code)})"
                          f"{rewrite.client_context(request)}")
                conn.send_error(502, plan.add_headers)
                return
            twin, failure = plan.variable_proxy.plan_for(self.app, plan, request, addresses)
            if twin is None:     # not expected: the same URL renders the same name
                message, status = failure if isinstance(failure, tuple) else ("resolver", 502)
                log.error(f"*{request.connection_id} {message}{rewrite.client_context(request)}")
                conn.send_error(status, plan.add_headers)
                return
            from gateway.http.phases import content_after_hold
            content_after_hold(self.app, conn, request, twin, self.redirects, pieces)
        except Exception as exc:   # a bug must cost one request, not the worker
            log.alert(f"unexpected {type(exc).__name__}: {exc} after resolving")
            if not conn.response_started:
                conn.send_error(500)

    def cancel(self):
        if not self.done:
            self.done = True
            self.waiter.cancel()


def _upstream(app, authority: str):
    """(UpstreamRuntime, $proxy_host, port) for a rendered host[:port], or (None, host, port)
    for a name to resolve (port None when it is not a valid one)."""
    host, _, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not host or not port.isdigit():
        host, port = authority, ""
    lower = host.lower()
    upstreams = app.upstreams
    if not port:
        named = upstreams.get(lower)
        if named is not None and not named.config.implicit:
            return named, host, 80
    number = int(port) if port else 80
    if not 0 < number < 65536:
        return None, host, None
    proxy_host = host if number == 80 else f"{host}:{number}"
    name = f"{lower}:{number}"
    found = upstreams.get(name)
    if found is not None:
        return found, proxy_host, number
    try:
        address = str(ipaddress.ip_address(lower.strip("[]")))
    except ValueError:
        return None, host, number
    found = upstreams[name] = _implicit_upstream(app, name, [UpstreamServer(name, address, number)])
    return found, proxy_host, number


def _resolved_upstream(app, resolver, host: str, port: int, addresses: list):
    """The peers a resolved name gives, as ngx_http_upstream_create_round_robin_peer makes
    them (weight 1, max_fails 1, fail_timeout 10 s, named by address): one runtime per name
    and answer, kept by the resolver (not among the configured upstreams)."""
    key = (host.lower(), port, tuple(addresses))
    found = resolver.upstreams.get(key)
    if found is None:
        servers = [UpstreamServer(_show(address, port), address, port) for address in addresses]
        found = _implicit_upstream(app, f"{host.lower()}:{port}", servers)
        if len(resolver.upstreams) >= MAX_TWINS:
            resolver.upstreams.pop(next(iter(resolver.upstreams)))
        resolver.upstreams[key] = found
    return found


def _implicit_upstream(app, name: str, servers: list):
    from gateway.http.upstream_connection import UpstreamRuntime
    from gateway.upstream import build_balancer
    config = Upstream(name, servers, implicit=True)
    return UpstreamRuntime(config, build_balancer(config), app.loop)


def _show(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
