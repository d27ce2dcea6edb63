"""``$invalid_referer`` (ngx_http_referer_module): "1" unless the Referer is one the location's
``valid_referers`` accepts, empty without ``valid_referers``."""

from __future__ import annotations

_MISSING = object()
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_HOST_MAX = 256          # nginx looks the host up in a 256-byte buffer: longer is invalid


def invalid_referer(r) -> str:
    """The variable's getter: "1" for an invalid referer, "" for a valid one.

    Kept for the request from its first reading, where ``set`` also writes it (nginx's cached
    indexed variable, NGX_HTTP_VAR_CHANGEABLE)."""
    values = getattr(r, "vars", None)
    if values is None:
        values = r.vars = {}
    else:
        found = values.get("invalid_referer")
        if found is not None:
            return found
    where = r.location if r.location is not None else r.server
    referers = where.settings.valid_referers if where is not None else None
    if referers is None:
        value = ""
    else:
        value = "" if _valid(referers, _first_referer(r)) else "1"
    values["invalid_referer"] = value
    return value


def _first_referer(r) -> str | None:
    """The first Referer field: nginx 1.22 keeps that one (r.header() would join them)."""
    for lower, _name, value in r.headers:
        if lower == b"referer":
            return value.decode("latin-1")
    return None


def _valid(referers, referer: str | None) -> bool:
    if referer is None:
        return referers.none
    # nginx reads a scheme only in a value at least as long as "http://i.ru".
    lower = referer[:8].lower()
    if len(referer) >= 11 and lower.startswith("http://"):
        rest = referer[7:]
    elif len(referer) >= 11 and lower.startswith("https://"):
        rest = referer[8:]
    else:
        return referers.blocked
    end = len(rest)
    for i, c in enumerate(rest):
        if c == "/" or c == ":":
            end = i
            break
    if end > _HOST_MAX:
        return False
    host = rest[:end].translate(_ASCII_LOWER)
    uri = _lookup(referers, host)
    if uri is not _MISSING:
        if uri is None:
            return True
        slash = rest.find("/", end)
        return slash >= 0 and rest.startswith(uri, slash)
    for regex in referers.server_name_regexes:
        if regex.search(host) is not None:
            return True
    for regex in referers.regexes:
        if regex.search(rest) is not None:
            return True
    return False


def _lookup(referers, host: str):
    """nginx's ngx_hash_find_combined: exact names, then "*.name", then "name.*"."""
    uri = referers.exact.get(host, _MISSING)
    if uri is not _MISSING:
        return uri
    if referers.head:
        # The longest matching suffix wins: "*.b.example.com" before "*.example.com".
        dot = host.find(".")
        while dot >= 0:
            uri = referers.head.get(host[dot + 1:], _MISSING)
            if uri is not _MISSING:
                return uri
            dot = host.find(".", dot + 1)
    if referers.tail:
        dot = host.rfind(".")
        while dot > 0:
            uri = referers.tail.get(host[:dot], _MISSING)
            if uri is not _MISSING:
                return uri
            dot = host.rfind(".", 0, dot)
    return _MISSING
