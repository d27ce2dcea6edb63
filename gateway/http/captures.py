"""Regex captures as nginx keeps them: ``$0``..``$9`` and named groups of the last regex that matched.

nginx sets them in the order its regexes run for a request: the ``server_name`` that chose
the server, the server's ``rewrite``/``if``, the ``location`` regexes on the way to the
location, then the location's script and any ``map`` when it is read.  Every regex that
matches replaces ``$1``..``$9`` (one without groups leaves them empty) and sets its own named
groups; a ``rewrite`` or ``if`` regex that does not match empties ``$1``..``$9``
(ngx_http_script_regex_start_code: ``r->ncaptures = 0``), other regexes that fail change
nothing.  Named groups keep their last value.

A plain request pays nothing for this: the server's and the first location's captures are
computed only when something reads a capture or another regex is about to replace them
(flush), so the compiled dispatch never runs a regex twice.  Searches made in Python (after
``rewrite ... last``, ``error_page``, ``try_files``, ``index``) apply their location's at once.
"""

from __future__ import annotations

from gateway.routing.router_py import normalize_host

# Keys in request.vars (a space keeps them apart from variable names).
NUMBERED = " groups"        # the match object of the last regex that matched
_FLUSHED = " captured"      # the server's and the first location's captures are applied


def _values(request) -> dict:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    return values


def _apply(values: dict, match) -> None:
    # The match itself: $1..$9 are read from it, no copy of its groups is made.
    values[NUMBERED] = match
    if match.re.groupindex:
        for name, group in match.groupdict("").items():
            values[name] = group


def _flushed(request) -> dict:
    """flush(request), without its call once the captures are applied (the common case)."""
    values = getattr(request, "vars", None)
    if values is not None and _FLUSHED in values:
        return values
    return flush(request)


def flush(request) -> dict:
    """The request's variables, with the captures nginx would have set by now."""
    values = _values(request)
    if _FLUSHED in values:
        return values
    values[_FLUSHED] = True
    server = request.server
    if server is not None and server.capture_regexes:
        match = _server_match(server, normalize_host(request.host))
        if match is not None:
            _apply(values, match)
    location = request.location
    if location is not None and location.capture_regexes:
        _apply_location(values, location, request.uri)
    return values


def _server_match(server, host: str):
    """The match of the server_name regex that chose ``server`` for ``host``, or None."""
    if not host:
        return None
    for name in server.server_names:
        if name.startswith("~"):
            continue
        # Chosen by an exact or wildcard name: nginx tried no regex.
        if name == host or (name.startswith("*.") and host.endswith(name[1:])) or \
                (name.startswith(".") and (host == name[1:] or host.endswith(name))) or \
                (name.endswith(".*") and host.startswith(name[:-1])):
            return None
    for regex in server.capture_regexes:
        match = regex.search(host)
        if match is not None:
            return match
    return None


def _apply_location(values: dict, location, uri: str) -> None:
    # The regex locations on the way to this one, outermost first: each matched uri.
    for regex in location.capture_regexes:
        match = regex.search(uri)
        if match is not None:
            _apply(values, match)


def set_captures(request, match) -> None:
    """A regex of a script or map matched: its captures replace the earlier ones."""
    _apply(_flushed(request), match)


def script_mismatch(request) -> None:
    """A rewrite or if regex did not match: nginx empties $1..$9."""
    _flushed(request).pop(NUMBERED, None)


def before_search(request) -> None:
    """About to search the locations again (the URI may change): keep what is pending."""
    server, location = request.server, request.location
    if (server is not None and server.capture_regexes) or \
            (location is not None and location.capture_regexes):
        flush(request)


def location_found(request) -> None:
    """A search made in Python chose request.location: its regexes' captures now hold."""
    location = request.location
    if location is not None and location.capture_regexes:
        values = _values(request)
        if _FLUSHED not in values:
            flush(request)      # the server's, then this location's
        else:
            _apply_location(values, location, request.uri)


def numbered(request, index: int) -> str:
    """``$index``: a group of the last regex that matched, else empty."""
    match = _flushed(request).get(NUMBERED)
    if match is None or index > match.re.groups:
        return ""
    return match.group(index) or ""


def named(request, name: str) -> str:
    """A named group's variable: its value from the last regex that had the group."""
    return _flushed(request).get(name, "")
