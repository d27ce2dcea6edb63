# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Location and virtual-server selection as nginx does it, as extension types.

The specification is gateway/routing/router_py.py: results must be identical.
"""

from gateway.routing.router_py import _auto_redirect, compile_regex

__all__ = ["LocationRouter", "ServerRouter"]


# How a search of one nesting level ended, as in the twin.
cdef enum:
    GO_ON = 0
    FOUND = 1
    REDIRECT = 2


cdef class _Level:
    """The locations directly inside one block, arranged for lookup (fields: router.pxd)."""

    def __init__(self, list locations):
        cdef Py_ssize_t k
        self.exact = {}
        self.prefixes = {}
        self.regexes = []
        self.children = {}
        for loc in locations:
            modifier = loc.modifier
            if modifier == "=":
                self.exact.setdefault(loc.pattern, loc)
            elif modifier == "" or modifier == "^~":
                self.prefixes.setdefault(loc.pattern, loc)
        for loc in locations:
            if loc.modifier != "@":
                child = _Level(loc.children)
                child.owner_caret = loc.modifier == "^~"
                self.children[id(loc)] = child
        for loc in locations:
            if loc.modifier == "~" or loc.modifier == "~*":
                regex = loc.regex or compile_regex(loc.pattern, loc.modifier == "~*")
                self.regexes.append((regex.search, loc, self.children[id(loc)]))
        # A prefix's own level next to it: no id() lookup while searching.
        self.prefix_levels = {pattern: (loc, self.children[id(loc)])
                              for pattern, loc in self.prefixes.items()}
        self.redirects = {}
        for name in {*self.exact, *self.prefixes}:
            pair = [loc for loc in (self.exact.get(name), self.prefixes.get(name)) if loc is not None]
            if name.endswith("/") and any(_auto_redirect(loc) for loc in pair):
                self.redirects[name[:len(name) - 1]] = pair[0]
        # Only a URI of one of these lengths can be a redirect key: no hashing for others.
        self.redirect_lengths = frozenset(len(name) for name in self.redirects)
        ordered = sorted({len(p) for p in self.prefixes}, reverse=True)
        self.nlengths = len(ordered)
        self.long_lengths = tuple(ordered)
        if self.nlengths <= 64:
            for k in range(self.nlengths):
                self.lengths[k] = ordered[k]

    cdef object longest_prefix(self, str uri):
        cdef tuple entry = self._longest_entry(uri)
        return entry[0] if entry is not None else None

    cdef tuple _longest_entry(self, str uri):
        """(location, its level) for the longest prefix of uri, or None."""
        cdef Py_ssize_t k, length, size = len(uri)
        if self.nlengths <= 64:
            for k in range(self.nlengths):
                length = self.lengths[k]
                if length <= size:
                    found = self.prefix_levels.get(uri[:length])
                    if found is not None:
                        return <tuple>found
            return None
        for length in self.long_lengths:
            if length <= size:
                found = self.prefix_levels.get(uri[:length])
                if found is not None:
                    return <tuple>found
        return None

    cdef int find(self, str uri, list out, bint redirects) except -1:
        """Put the location found at this level into out[0]; say how the search ended."""
        cdef _Level sub
        cdef bint noregex = False
        cdef int end
        cdef tuple entry
        if self.exact:     # an empty dict would still hash uri
            loc = self.exact.get(uri)
            if loc is not None:
                out[0] = loc
                return FOUND
        if redirects and self.redirects and len(uri) in self.redirect_lengths \
                and uri not in self.prefixes:
            loc = self.redirects.get(uri)
            if loc is not None:
                out[0] = loc
                return REDIRECT
        entry = self._longest_entry(uri) if self.nlengths else None
        if entry is not None:
            out[0] = entry[0]
            sub = <_Level>entry[1]
            noregex = sub.owner_caret
            end = sub.find(uri, out, redirects)
            if end != GO_ON:
                return end
        if not noregex:
            for search, rloc, sub in self.regexes:
                if search(uri) is not None:
                    out[0] = rloc
                    sub.find(uri, out, redirects)
                    return FOUND
        return GO_ON


cdef class LocationRouter:
    """Finds the location for a URI with ngx_http_core_find_location's algorithm."""

    def __init__(self, locations):
        self.top = _Level(list(locations))
        self._out = [None]
        self._named = {loc.pattern.lstrip("@"): loc for loc in locations if loc.modifier == "@"}

    def named(self, str name):
        """The ``location @name`` block, or None."""
        return self._named.get(name.lstrip("@"))

    def match(self, str uri):
        """The location that handles uri, or None (nginx's choice, auto-redirect aside)."""
        cdef list out = [None]
        if self.top.find(uri, out, True) == REDIRECT:
            out[0] = None
            self.top.find(uri, out, False)
        return out[0]

    def find(self, str uri):
        """(location, redirect): redirect means nginx answers 301 to uri + "/" (auto_redirect)."""
        cdef bint redirect = False
        location = self.locate(uri, &redirect)
        return location, redirect

    cdef object locate(self, str uri, bint* redirect):
        """find() for C callers: the location, with redirect set instead of a tuple."""
        # One result slot kept for every call: nothing in a search runs Python code that
        # could re-enter here (regex search is C), so it is free again on return.
        cdef list out = self._out
        try:
            redirect[0] = self.top.find(uri, out, True) == REDIRECT
            return out[0]
        finally:
            out[0] = None


cpdef str normalize_host(host):
    """A Host value as server names are compared: lower case, no port, no trailing dot."""
    cdef str h
    cdef Py_ssize_t end
    if not host:
        return ""
    h = host.lower()
    if h[0] == "[":
        end = h.find("]")
        if end >= 0:
            h = h[:end + 1]
    else:
        end = h.find(":")
        if end >= 0:
            h = h[:end]
    if h.endswith("."):
        h = h[:len(h) - 1]
    return h


cdef class _Names:
    """The server names of the servers sharing one listening socket."""

    cdef list servers
    cdef dict exact, head_bare, head, tail
    cdef list regexes
    cdef object default

    def __init__(self):
        self.servers = []
        self.exact = {}
        self.head_bare = {}
        self.head = {}
        self.tail = {}
        self.regexes = []
        self.default = None

    cdef add(self, server):
        for name in server.server_names:
            if name.startswith("~"):
                self.regexes.append((compile_regex(name[1:], True).search, server))
                continue
            name = name.lower()
            if name.startswith("*."):
                self.head.setdefault(name[1:], server)
            elif name.startswith("."):
                self.head.setdefault(name, server)
                self.head_bare.setdefault(name[1:], server)
            elif name.endswith(".*"):
                self.tail.setdefault(name[:len(name) - 1], server)
            else:
                self.exact.setdefault(name, server)

    cdef object find(self, str host):
        cdef Py_ssize_t dot, size = len(host)
        server = self.exact.get(host)
        if server is not None:
            return server
        if size == 0:
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
            dot = host.rfind(".", 0, size - 1)
            while dot >= 0:
                server = self.tail.get(host[:dot + 1])
                if server is not None:
                    return server
                dot = host.rfind(".", 0, dot)
        for search, server in self.regexes:
            if search(host) is not None:
                return server
        return None


cdef class ServerRouter:
    """Chooses the virtual server for a connection's socket and Host, as nginx does."""

    cdef dict _keys

    def __init__(self, servers):
        cdef _Names names
        self._keys = {}
        defaults = {}
        for server in servers:
            for listen in server.listens:
                if listen.default_server:
                    defaults.setdefault(listen.key, server)
        for server in servers:
            for listen in server.listens:
                key = listen.key
                names = self._keys.get(key)
                if names is None:
                    names = _Names()
                    names.default = defaults.get(key, server)
                    self._keys[key] = names
                if not any(s is server for s in names.servers):
                    names.servers.append(server)
                    names.add(server)

    def listen_keys(self):
        """Every (host, port) socket the servers listen on, in config order."""
        return list(self._keys)

    def default(self, listen_key):
        """The default server of a listening socket (default_server, else its first server)."""
        cdef _Names names = self._keys.get(listen_key)
        if names is None:
            raise KeyError(f"no server listens on {listen_key[0]}:{listen_key[1]}")
        return names.default

    def select(self, listen_key, host):
        """The server for a request on listen_key with this Host (None for no Host)."""
        cdef _Names names = self._keys.get(listen_key)
        if names is None:
            raise KeyError(f"no server listens on {listen_key[0]}:{listen_key[1]}")
        server = names.find(normalize_host(host))
        return names.default if server is None else server
