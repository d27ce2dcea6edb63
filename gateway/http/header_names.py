"""nginx's request field names: underscores_in_headers and ignore_invalid_headers.

nginx calls a request field name valid when it is letters, digits and "-" only ("_" too with
``underscores_in_headers on``); with ``ignore_invalid_headers on`` (the default) a field with
another name is dropped: not passed upstream, no ``$http_*``, an ``info`` line in the error log,
its bytes still in ``$request_length``. With it off the field is kept like any other. Names
with CTL, SP, DEL or ":" are refused by the parsers either way (a 400; on HTTP/2, with
uppercase letters too, a stream reset).

The parsers only say whether a head holds such a name (``odd_names``): this module runs for
those heads alone. Which server's settings apply follows nginx: the socket's default server's
for the fields up to the one that names the virtual server (Host, or HTTP/2's :authority before
every field), that server's for the fields after it; with an absolute-form target the request
line names it and its settings apply to every field (ngx_http_process_request_headers reads
them again for each line; ngx_http_v2_state_process_header for each field).
"""

from __future__ import annotations

from gateway.observe.errorlog import log

# The bytes of names nginx always calls valid (its lowcase[] table: "-", digits, letters).
_PLAIN = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _ignored(name: bytes, server) -> bool:
    """Whether nginx drops a field with this name under this server's settings."""
    other = name.translate(None, _PLAIN)
    if not other or not server.ignore_invalid_headers:
        return False
    return not (server.underscores_in_headers and not other.strip(b"_"))


def screen(headers: list, host_at: int, default, server) -> tuple[list, list[int]]:
    """The fields nginx keeps, and the indices of those it drops.

    Fields up to index ``host_at`` are read under ``default``'s settings, later ones under
    ``server``'s (-1: all under ``server``'s)."""
    kept = []
    dropped = []
    for i, field in enumerate(headers):
        if _ignored(field[1], default if i <= host_at else server):
            dropped.append(i)
        else:
            kept.append(field)
    return kept, dropped


def _host_index(headers: list) -> int:
    """The index of the first Host field, or the number of fields."""
    for i, field in enumerate(headers):
        if field[0] == b"host":
            return i
    return len(headers)


def _underscored(request, kept: list) -> None:
    """Mark a request whose fields hold a name with "_" ($http_* then looks at "_" too)."""
    for field in kept:
        if b"_" in field[0]:
            request.underscored_names = True
            return


def _context(request, server, host: bool, line: bool) -> str:
    """nginx's log tail while it reads a request's fields."""
    name = server.server_names[0] if server.server_names else ""
    text = f" while reading client request headers, client: {request.remote_addr}, server: {name}"
    if line:
        text += f', request: "{request.method} {request.request_uri} {request.protocol}"'
    if host and request.host:
        text += f', host: "{request.host}"'
    return text


def _field_lines(head: bytes) -> list[bytes]:
    """The field lines of a whole, valid request head, without their line ends."""
    lines = head.split(b"\n")
    start = 0
    while not lines[start].rstrip(b"\r"):      # empty lines before the request line
        start += 1
    return [line[:-1] if line[-1:] == b"\r" else line for line in lines[start + 1:-2]]


def _shown(line: bytes, value: bytes) -> bytes:
    """The line as nginx logs it: up to the end of its value (spaces after it left out)."""
    if not value:
        return line
    return line[:line.rindex(value) + len(value)]


def screen_http1(request, head: bytes, absolute: bool, default, server) -> list:
    """request.headers without the fields nginx drops, each dropped one logged as nginx does.

    ``head``: the request head as received; ``absolute``: its target is absolute-form."""
    headers = request.headers
    host_at = -1 if absolute else _host_index(headers)
    kept, dropped = screen(headers, host_at, default, server)
    if dropped and log.enabled("info"):
        lines = _field_lines(head)
        for i in dropped:
            after = i > host_at
            text = _shown(lines[i], headers[i][2]).decode("latin-1")
            log.info(f'*{request.connection_id} client sent invalid header line: "{text}"'
                     + _context(request, server if after else default, after, True))
    request.headers = kept
    _underscored(request, kept)
    return kept


def screen_http2(request, authority: bool, default, server) -> list:
    """screen_http1 for an HTTP/2 request: ``authority``, it had :authority."""
    headers = request.headers
    host_at = -1 if authority else _host_index(headers)
    kept, dropped = screen(headers, host_at, default, server)
    if dropped and log.enabled("info"):
        for i in dropped:
            after = i > host_at
            name = headers[i][1].decode("latin-1")
            log.info(f'*{request.connection_id} client sent invalid header: "{name}"'
                     + _context(request, server if after else default, after, False))
    request.headers = kept
    _underscored(request, kept)
    return kept
