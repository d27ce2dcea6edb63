"""Per-request evaluation of ``map`` and ``split_clients`` variables (nginx semantics);
``geo`` ones are in gateway/http/geo.py."""

from __future__ import annotations

from gateway._select import load_fast
from gateway.config.model import GeoBlock, MapBlock, SplitClients
from gateway.http.captures import set_captures
from gateway.http.geo import GeoVariable
from gateway.http.variables import compile_template, use_user_variables
from gateway.observe.errorlog import log

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur_hash2(data: bytes) -> int:
    """MurmurHash2 with seed 0, bit for bit nginx's ngx_murmur_hash2."""
    length = len(data)
    h = length & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[whole:]
    if tail:
        if len(tail) == 3:
            h ^= tail[2] << 16
        if len(tail) >= 2:
            h ^= tail[1] << 8
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


class MapVariable:
    """Evaluates one ``map``: exact key, then wildcards (hostnames), then regexes in order."""

    __slots__ = ("source", "exact", "head", "tail", "regexes", "default", "hostnames",
                 "volatile")
    always_found = True

    def __init__(self, block: MapBlock):
        self.source = compile_template(block.source)
        self.exact = {k: compile_template(v) for k, v in block.exact.items()}
        self.head = {k: compile_template(v) for k, v in block.wildcard_head.items()}
        self.tail = {k: compile_template(v) for k, v in block.wildcard_tail.items()}
        self.regexes = [(r, compile_template(v)) for r, v in block.regexes]
        self.default = compile_template(block.default)
        self.hostnames = block.hostnames
        self.volatile = block.volatile

    def __call__(self, request) -> str:
        key = self.source.render(request)
        if self.hostnames and key.endswith("."):
            key = key[:-1]
        value = self._find(request, key)
        return (value if value is not None else self.default).render(request)

    def _find(self, request, key: str):
        lower = key.lower()
        value = self.exact.get(lower)
        if value is not None:
            return value
        if self.head:
            # The longest matching suffix wins: "*.b.example.com" before "*.example.com".
            dot = lower.find(".")
            while dot >= 0:
                value = self.head.get(lower[dot + 1:])
                if value is not None:
                    return value
                dot = lower.find(".", dot + 1)
        if self.tail:
            dot = lower.rfind(".")
            while dot > 0:
                value = self.tail.get(lower[:dot])
                if value is not None:
                    return value
                dot = lower.rfind(".", 0, dot)
        if key:   # nginx tries the regexes only on a non-empty value
            for regex, value in self.regexes:
                match = regex.search(key)
                if match is not None:
                    set_captures(request, match)
                    return value
        return None


class SplitClientsVariable:
    """Evaluates one ``split_clients``: the part whose range holds MurmurHash2 of the key."""

    __slots__ = ("source", "parts")
    volatile = False
    always_found = True

    def __init__(self, block: SplitClients):
        self.source = compile_template(block.source)
        self.parts = list(block.parts)

    def __call__(self, request) -> str:
        key = self.source.render(request).encode("utf-8", "surrogateescape")
        hashed = murmur_hash2(key)
        for bound, value in self.parts:
            if hashed < bound or bound == 0:
                return value
        return ""


class Uninitialized:
    """A ``set`` variable read before any ``set`` ran: empty, with nginx's warning."""

    __slots__ = ("name",)
    volatile = True        # a later "set" must still be seen

    def __init__(self, name: str):
        self.name = name

    def __call__(self, request) -> str:
        where = request.location if request.location is not None else request.server
        if where is not None and where.settings.uninitialized_variable_warn:
            from gateway.http.rewrite import client_context
            log.warn(f'*{request.connection_id} using uninitialized "{self.name}" variable'
                     f"{client_context(request)}")
        return ""


def _not_found(request) -> str:
    """An auth_request_set variable before its subrequest set it: empty, without a warning."""
    return ""


_not_found.volatile = True


def evaluators(definitions: dict) -> dict:
    """name -> evaluator for variables.use_user_variables (None stays None: set-only)."""
    out = {}
    for name, definition in definitions.items():
        if isinstance(definition, MapBlock):
            out[name] = _compiled(MapVariable(definition))
        elif isinstance(definition, SplitClients):
            out[name] = SplitClientsVariable(definition)
        elif isinstance(definition, GeoBlock):
            out[name] = GeoVariable(definition)
        elif definition == "set":
            out[name] = Uninitialized(name)
        elif definition == "auth_request_set":
            out[name] = _not_found
        else:
            out[name] = None
    return out


_fast = load_fast("variables")


def _compiled(variable: MapVariable):
    """The compiled twin (_fastpath/variables.pyx) of a map when built."""
    return _fast.MapVariable(variable) if _fast is not None else variable


def install_variables(definitions: dict) -> None:
    """Make a configuration's own variables usable by every template compiled after this."""
    # Names first, so that maps whose values name other maps compile in any order.
    use_user_variables(dict.fromkeys(definitions))
    use_user_variables(evaluators(definitions))
