"""Location and virtual-server selection as nginx does it: the pure-Python specification.

``_fastpath/router.pyx`` must agree with this module on every input
(tests/routing/ runs both).
"""

from __future__ import annotations

from gateway.config.pcre import compile_regex

__all__ = ["LocationRouter", "ServerRouter", "compile_regex", "normalize_host"]


# How a search of one nesting level ended (nginx's NGX_DECLINED/AGAIN, NGX_OK, NGX_DONE).
_GO_ON, _FOUND, _REDIRECT = 0, 1, 2


def _auto_redirect(loc) -> bool:
    """nginx's auto_redirect: a location ending in "/" whose content is passed on."""
    settings = loc.settings
    return loc.pattern.endswith("/") and (
        getattr(settings, "proxy_pass", None) is not None
        or getattr(settings, "unikernel_pass", None) is not None)


class _Level:
    """The locations directly inside one block, arranged for lookup."""

    __slots__ = ("exact", "prefixes", "lengths", "regexes", "redirects")

    def __init__(self, locations, levels):
        self.exact = {}
        self.prefixes = {}
        self.regexes = []
        for loc in locations:
            if loc.modifier == "=":
                self.exact.setdefault(loc.pattern, loc)
            elif loc.modifier in ("", "^~"):
                self.prefixes.setdefault(loc.pattern, loc)
            elif loc.modifier in ("~", "~*"):
                regex = loc.regex or compile_regex(loc.pattern, loc.modifier == "~*")
                self.regexes.append((regex, loc))
        # Longest first: the first hit is nginx's longest matching prefix.
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)
        # "/app" answers 301 to "/app/" when "/app/" is passed on and no
        # location is named "/app" (ngx_http_core_find_static_location).
        self.redirects = {}
        for name in {*self.exact, *self.prefixes}:
            pair = [loc for loc in (self.exact.get(name), self.prefixes.get(name)) if loc is not None]
            if name.endswith("/") and any(_auto_redirect(loc) for loc in pair):
                self.redirects[name[:-1]] = pair[0]
        for loc in locations:
            if loc.modifier != "@":
                levels[id(loc)] = _Level(loc.children, levels)


class LocationRouter:
    """Finds the location for a URI with ngx_http_core_find_location's algorithm."""

    def __init__(self, locations):
        self._levels = {}
        self._top = _Level(locations, self._levels)
        self._named = {loc.pattern.lstrip("@"): loc for loc in locations if loc.modifier == "@"}

    def named(self, name: str):
        """The ``location @name`` block, or None."""
        return self._named.get(name.lstrip("@"))

    def match(self, uri: str):
        """The location that handles uri, or None (nginx's choice, auto-redirect aside)."""
        end, loc = self._find(self._top, uri)
        if end == _REDIRECT:
            # Without the redirect nginx would not choose this location: search
            # as if the "/app/" location did not ask for one.
            return self._find(self._top, uri, False)[1]
        return loc

    def find(self, uri: str):
        """(location, redirect): redirect means nginx answers 301 to uri + "/" (auto_redirect)."""
        end, loc = self._find(self._top, uri)
        return loc, end == _REDIRECT

    def _find(self, level, uri, redirects=True):
        """(how the search ended, location) for one nesting level."""
        loc = level.exact.get(uri)
        if loc is not None:
            return _FOUND, loc
        if redirects and level.redirects and uri not in level.prefixes:
            loc = level.redirects.get(uri)
            if loc is not None:
                return _REDIRECT, loc
        result = None
        noregex = False
        size = len(uri)
        for length in level.lengths:
            if length <= size:
                result = level.prefixes.get(uri[:length])
                if result is not None:
                    break
        if result is not None:
            noregex = result.modifier == "^~"
            end, deeper = self._find(self._levels[id(result)], uri, redirects)
            if deeper is not None:
                result = deeper
            if end != _GO_ON:
                return end, result
        # A nested "^~" only suppresses the regexes of its own parent level,
        # as in nginx, where each recursion keeps its own noregex flag.
        if not noregex:
            for regex, rloc in level.regexes:
                if regex.search(uri) is not None:
                    # A redirect found below a regex location is not taken: nginx
                    # returns NGX_OK from there (the location is used as is).
                    deeper = self._find(self._levels[id(rloc)], uri, redirects)[1]
                    return _FOUND, rloc if deeper is None else deeper
        return _GO_ON, result


def normalize_host(host):
    """A Host value as server names are compared: lower case, no port, no trailing dot."""
    if not host:
        return ""
    host = host.lower()
    if host[0] == "[":
        end = host.find("]")
        if end >= 0:
            host = host[:end + 1]
    else:
        colon = host.find(":")
        if colon >= 0:
            host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    return host


class _Names:
    """The server names of the servers sharing one listening socket."""

    __slots__ = ("servers", "exact", "head_bare", "head", "tail", "regexes", "default")

    def __init__(self):
        self.servers = []
        self.exact = {}
        self.head_bare = {}     # ".example.com" also matches example.com itself
        self.head = {}          # ".example.com" for "*.example.com" and ".example.com"
        self.tail = {}          # "www.example." for "www.example.*"
        self.regexes = []
        self.default = None

    def add(self, server):
        for name in server.server_names:
            if name.startswith("~"):
                self.regexes.append((compile_regex(name[1:], True), server))
                continue
            name = name.lower()
            if name.startswith("*."):
                self.head.setdefault(name[1:], server)
            elif name.startswith("."):
                self.head.setdefault(name, server)
                self.head_bare.setdefault(name[1:], server)
            elif name.endswith(".*"):
                self.tail.setdefault(name[:-1], server)
            else:
                self.exact.setdefault(name, server)

    def find(self, host):
        server = self.exact.get(host)
        if server is not None:
            return server
        if not host:
            return None
        if self.head:
            server = self.head_bare.get(host)
            if server is not None:
                return server
            dot = host.find(".", 1)
            while dot > 0:
                server = self.head.get(host[dot:])
                if server is not None:
                    return server
                dot = host.find(".", dot + 1)
        if self.tail:
            dot = host.rfind(".", 0, len(host) - 1)
            while dot >= 0:
                server = self.tail.get(host[:dot + 1])
                if server is not None:
                    return server
                dot = host.rfind(".", 0, dot)
        for regex, server in self.regexes:
            if regex.search(host) is not None:
                return server
        return None


class ServerRouter:
    """Chooses the virtual server for a connection's socket and Host, as nginx does."""

    def __init__(self, servers):
        self._keys = {}
        defaults = {}
        for server in servers:
            for listen in server.listens:
                if listen.default_server:
                    defaults.setdefault(listen.key, server)
        for server in servers:
            for listen in server.listens:
                names = self._keys.get(listen.key)
                if names is None:
                    names = self._keys[listen.key] = _Names()
                    names.default = defaults.get(listen.key, server)
                if not any(s is server for s in names.servers):
                    names.servers.append(server)
                    names.add(server)

    def listen_keys(self):
        """Every (host, port) socket the servers listen on, in config order."""
        return list(self._keys)

    def default(self, listen_key):
        """The default server of a listening socket (default_server, else its first server)."""
        names = self._keys.get(listen_key)
        if names is None:
            raise KeyError(f"no server listens on {listen_key[0]}:{listen_key[1]}")
        return names.default

    def select(self, listen_key, host):
        """The server for a request on listen_key with this Host (None for no Host)."""
        names = self._keys.get(listen_key)
        if names is None:
            raise KeyError(f"no server listens on {listen_key[0]}:{listen_key[1]}")
        server = names.find(normalize_host(host))
        return names.default if server is None else server
