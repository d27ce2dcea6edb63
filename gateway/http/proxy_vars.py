"""``proxy_pass`` with variables (``proxy_pass http://app/$1;``), as nginx evaluates it.

The URL is rendered per request.  Its host names an ``upstream`` block (or the host:port of
another ``proxy_pass``), or is an IP address; any other name would need nginx's ``resolver``
and is answered 502 with nginx's ``no resolver defined to resolve`` error.  A URI part in the
rendered URL is sent as it is, the request's arguments not added; without one the request's
own URI goes (ngx_http_proxy_create_request with ``ctx->vars.uri``).

Each location keeps one plain proxy plan per upstream it reached ("twins"), so the request
is then proxied by the ordinary (compiled) exchange; locations without variables never come here.
"""

from __future__ import annotations

import copy
import ipaddress

from gateway.config.model import Upstream, UpstreamServer
from gateway.http.plan import ProxyPlan, escape_uri
from gateway.http.variables import compile_template

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

    def plan_for(self, app, plan, request):
        """(the plain proxy plan for this request, None), or (None, nginx's error and status)."""
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
        upstream, proxy_host = _upstream(app, authority)
        if upstream is None:
            return None, (f"no resolver defined to resolve {proxy_host}", 502)
        twin = copy.copy(plan)
        twin.kind = "proxy"
        twin.proxy = VariableProxyPlan(plan.location, plan.settings, upstream, proxy_host,
                                       plan.expires)
        if len(self.twins) < MAX_TWINS:
            self.twins[authority] = twin
        return twin, None


def _upstream(app, authority: str):
    """(UpstreamRuntime, $proxy_host) for a rendered host[:port], or (None, host)."""
    host, _, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not host or not port.isdigit():
        host, port = authority, ""
    lower = host.lower()
    upstreams = app.upstreams
    if not port:
        named = upstreams.get(lower)
        if named is not None and not named.config.implicit:
            return named, host
    number = int(port) if port else 80
    if not 0 < number < 65536:
        return None, host
    proxy_host = host if number == 80 else f"{host}:{number}"
    name = f"{lower}:{number}"
    found = upstreams.get(name)
    if found is not None:
        return found, proxy_host
    try:
        address = str(ipaddress.ip_address(lower.strip("[]")))
    except ValueError:
        return None, host
    from gateway.http.upstream_connection import UpstreamRuntime
    from gateway.upstream import build_balancer
    config = Upstream(name, [UpstreamServer(name, address, number)], implicit=True)
    found = upstreams[name] = UpstreamRuntime(config, build_balancer(config), app.loop)
    return found, proxy_host
