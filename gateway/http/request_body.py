"""$request_body: the client's body when it was read whole into memory.

nginx has it for proxied requests whose body fits its memory buffer (client_body_buffer_size,
16k on 64-bit systems; a larger body goes to a temporary file and the variable is empty);
never for requests whose body is not read (static files, return). The proxy keeps the body
for it only once a configuration reads the variable (``wanted()``); a proxy_set_header that
reads it makes the exchange read the whole body before the request goes upstream, as nginx's
proxy_request_buffering does.
"""

from __future__ import annotations

# nginx's client_body_buffer_size default on 64-bit systems (two memory pages).
MEMORY_LIMIT = 16 * 1024
KEY = " request_body"

_wanted = [False]


def wanted() -> bool:
    """Whether any template compiled so far reads $request_body."""
    return _wanted[0]


def getter(r) -> str:
    """$request_body, its bytes as latin-1 text (one character per byte)."""
    values = getattr(r, "vars", None)
    return values.get(KEY, "") if values else ""


def keep(request, parts, size: int) -> None:
    """The whole body has been read: keep it for $request_body if it fits in memory."""
    if size > MEMORY_LIMIT or sum(map(len, parts)) != size:
        return
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[KEY] = b"".join(parts).decode("latin-1")


def reads_body(template) -> bool:
    """Whether a compiled template reads $request_body."""
    return any(part is getter for part in template.parts)
