"""$sent_http_NAME, $sent_trailer_NAME, $upstream_http_NAME, $upstream_cookie_NAME: response
fields read back from the heads as they went.

The connection keeps the head it sent (and the proxy the upstream's) in ``request.vars``
only once a configuration reads one of these variables (``wanted()``), so configurations
without them pay nothing. Before the head is complete (``add_header`` values are rendered
while it is built) the fields known so far are there: the upstream's relayed fields.
"""

from __future__ import annotations

# request.vars keys: bytes of the head sent to the client (or the fields so far), the
# upstream's head (status line, fields, maybe body bytes after), the trailer lines sent.
SENT = " sent_head"
UPSTREAM = " upstream_head"
TRAILERS = " sent_trailers"
# An auth_request subrequest's upstream fields, lowercase name -> value (auth_request.py).
AUTH_FIELDS = " upstream_fields"

# Fields nginx's $sent_http_* joins when there are several (ngx_http_variable_headers).
_JOINED = frozenset({"cache_control", "link"})
# Lines the gateway writes itself that nginx's headers_out does not list.
_OWN = frozenset({"server", "date"})

_wanted = [False]


def wanted() -> bool:
    """Whether any variable compiled so far reads a recorded head."""
    return _wanted[0]


def record(request, key: str, head) -> None:
    """Keep ``head`` (bytes) for the variables of one request."""
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[key] = head


def _lines(head: bytes):
    end = head.find(b"\r\n\r\n")
    lines = (head[:end] if end >= 0 else head).split(b"\r\n")
    if lines and lines[0][:5] == b"HTTP/":
        del lines[0]
    return lines


def _fields(head: bytes, name: str, skip_own: bool):
    """The values of the fields called ``name`` (lowercase, "_" for "-"), in order."""
    key = name.encode("latin-1")
    found = []
    for line in _lines(head):
        field, colon, value = line.partition(b":")
        if not colon:
            continue
        field = field.strip().lower().replace(b"-", b"_")
        if field == key:
            found.append(value.strip().decode("latin-1"))
    if skip_own and name in _OWN:
        return []
    return found


def _head(request, key):
    values = getattr(request, "vars", None)
    return values.get(key) if values else None


def _cached(prefix: str, name: str, read):
    """A getter that keeps its first value for the request, as nginx caches indexed
    variables: read by ``return`` before the head exists, it stays empty in the log."""
    _wanted[0] = True
    key = (prefix, name)

    def get(r):
        values = getattr(r, "vars", None)
        if values is None:
            values = r.vars = {}
        found = values.get(key)
        if found is None:
            found = values[key] = read(r)
        return found
    return get


def sent_getter(name: str):
    """$sent_http_NAME: the first such field sent (Cache-Control and Link: all, joined)."""
    def read(r):
        head = _head(r, SENT)
        if not head:
            return ""
        found = _fields(head, name, True)
        if name in _JOINED:
            return ", ".join(found)
        return found[0] if found else ""
    return _cached("sent_http_", name, read)


def trailer_getter(name: str):
    """$sent_trailer_NAME: an add_trailer field sent with the last chunk."""
    def read(r):
        lines = _head(r, TRAILERS)
        if not lines:
            return ""
        found = _fields(lines, name, False)
        return found[0] if found else ""
    return _cached("sent_trailer_", name, read)


def upstream_getter(name: str):
    """$upstream_http_NAME: the first such field of the upstream's response head."""
    dashed = name.replace("_", "-")

    def read(r):
        fields = _head(r, AUTH_FIELDS)
        if fields is not None:      # an auth_request subrequest's (gateway/http/auth_request.py)
            return fields.get(dashed, "")
        head = _head(r, UPSTREAM)
        if not head:
            return ""
        found = _fields(head, name, False)
        return found[0] if found else ""
    return _cached("upstream_http_", name, read)


def upstream_cookie_getter(name: str):
    """$upstream_cookie_NAME: the cookie's value in the upstream's Set-Cookie fields
    (ngx_http_parse_set_cookie_lines: the name compared caselessly)."""
    name = name.lower()

    def read(r):
        head = _head(r, UPSTREAM)
        if not head:
            return ""
        for value in _fields(head, "set_cookie", False):
            cookie, _, _ = value.partition(";")
            key, equals, found = cookie.partition("=")
            if equals and key.strip().lower() == name:
                return found.strip()
        return ""
    return _cached("upstream_cookie_", name, read)


def upstream_trailer_getter(name: str):
    """$upstream_trailer_NAME: upstream trailers are relayed, never parsed: always empty."""
    return lambda r: ""
