"""add_trailer (ngx_http_headers_module, nginx 1.13.2+): fields sent after a chunked body.

As nginx does: when a trailer applies to the status (200, 201, 204, 206, 301, 302, 303, 304,
307, 308, or any with ``always``), an HTTP/1.1 response with a body goes out chunked, its
Content-Length dropped (ngx_http_chunked_header_filter with expect_trailers); the values are
rendered once the body is done, and the empty ones left out (ngx_http_trailers_filter). On
HTTP/2 the handlers frame the body the same way and the stream (http2_stream.py) sends the
chunks as DATA and the fields as a last HEADERS frame, its Content-Length kept.
Locations without add_trailer never load this module's work: their plans have none.
"""

from __future__ import annotations

from gateway.http import response_heads
from gateway.http.responses import CLOSING_ERRORS, error_page
from gateway.http.variables import compile_template

SAFE = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})
TE_LINE = b"Transfer-Encoding: chunked\r\n"

_templates: dict = {}


def expected(settings, request, status: int) -> bool:
    """Whether this response goes chunked with trailers (r->expect_trailers and chunked)."""
    entries = settings.add_trailers
    if not entries or request.version < 11 or request.method == "HEAD" \
            or status < 200 or status in (204, 304):
        return False
    safe = status in SAFE
    return any(safe or entry.always for entry in entries)


def chunked_lines(conn, lines: bytes) -> bytes:
    """Header lines without Content-Length, with Transfer-Encoding: chunked (once).

    An HTTP/2 stream keeps them as they are (nginx's HTTP/2 header filter runs before its
    chunked filter, so Content-Length stays): it takes our chunks apart itself.
    """
    if getattr(conn, "stream_id", None) is not None:
        conn.expect_trailers()
        return lines
    kept = [line + b"\r\n" for line in lines.split(b"\r\n")
            if line and line[:15].lower() != b"content-length:"
            and line.lower() != TE_LINE[:-2].lower()]
    return b"".join(kept) + TE_LINE


def chunk(data: bytes) -> bytes:
    """One chunk (none for no bytes: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def last_chunk(settings, request, status: int) -> bytes:
    """The last chunk with the trailers that apply, rendered now."""
    safe = status in SAFE
    lines = []
    for entry in settings.add_trailers:
        if not (safe or entry.always):
            continue
        template = _templates.get(entry.value)
        if template is None:
            template = _templates[entry.value] = compile_template(entry.value)
        value = template.render(request)
        if value:
            lines.append(b"%s: %s\r\n" % (entry.name.encode("latin-1"),
                                          value.encode("latin-1", "replace")))
    block = b"".join(lines)
    if block and response_heads.wanted():
        response_heads.record(request, response_heads.TRAILERS, block)
    return b"0\r\n" + block + b"\r\n"


def send_simple(conn, settings, status: int, body: bytes = b"",
                content_type: bytes | None = b"text/html", extra: bytes = b"",
                add_headers=None, empty_type: bool = False) -> None:
    """conn.send_simple for a location with add_trailer: chunked with trailers when they apply."""
    request = conn.request
    if not expected(settings, request, status):
        conn.send_simple(status, body, content_type, extra, add_headers, empty_type)
        return
    request.status = status         # the trailers are rendered first: $status is this one
    if body and settings.gzip:
        from gateway.http import gzip       # gzip imports this module
        extra = gzip.simple(conn, status, body, content_type, extra, add_headers,
                            (settings, status))
        if extra is None:
            return      # sent compressed, the trailers after the body
    lines = [b"Content-Type: %s\r\n" % content_type] \
        if content_type is not None and (body or empty_type) else []
    lines.append(extra)
    if getattr(conn, "stream_id", None) is not None:
        conn.expect_trailers()      # HTTP/2: Content-Length kept (see chunked_lines)
        lines.append(b"Content-Length: %d\r\n" % len(body))
    else:
        lines.append(TE_LINE)
    conn.send_head(status, b"".join(lines), add_headers,
                   chunk(body) + last_chunk(settings, request, status))
    conn.finish_response()


def send_error(conn, settings, status: int, add_headers=None) -> None:
    """conn.send_error for a location with add_trailer (static files' errors)."""
    if status in CLOSING_ERRORS:
        conn.closing_after_response = True
    app = conn.app
    if getattr(app, "error_pages_in_use", False) and app.answer_error_page(conn, status):
        return
    send_simple(conn, settings, status, error_page(status, settings.server_tokens),
                b"text/html", b"", add_headers)


class ChunkWriter:
    """A static file's body in chunks, then the trailers (FileSender's writer)."""

    __slots__ = ("conn", "settings", "status")

    def __init__(self, conn, settings, status: int):
        self.conn = conn
        self.settings = settings
        self.status = status

    def write(self, data) -> None:
        if data:
            self.conn.send_body(chunk(data))

    def end(self) -> None:
        self.conn.send_body(last_chunk(self.settings, self.conn.request, self.status))
