"""Directory listings as nginx's autoindex module makes them: html, xml, json and jsonp.

``listing(request, settings, path)`` runs when the index module found no index file in an
existing directory (``static._index``). It reads and sorts the directory up front, as nginx
does (directories first, then names by byte order; names starting with "." are skipped), and
returns a ``Listing`` whose body is made piece by piece while it is sent, so a large directory
is never held as one string. Mirrored from nginx 1.22:
- html names are cut at 50 bytes ("..&gt;"), padded to that width, with the date as
  "06-Dec-2026 00:01" (``autoindex_localtime`` shifts it by the local zone offset now) and the
  size exact, or "1K"/"2M"/"3G" rounded half up when ``autoindex_exact_size off``;
- entries are typed by stat(), so a symlink shows what it points to, and a dangling one
  (lstat's) shows as "other" without a trailing slash; entries stat() may not read are left out;
- the charset is never utf-8 here (``charset`` is not acted on), so names are cut by bytes.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
import time

from gateway.observe.errorlog import log

NAME_LEN = 50                  # NGX_HTTP_AUTOINDEX_NAME_LEN
PIECE = 64 * 1024              # bytes of listing made at a time

CONTENT_TYPES = {"html": "text/html", "json": "application/json",
                 "jsonp": "application/javascript", "xml": "text/xml; charset=utf-8"}

_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
           b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")

# NGX_ESCAPE_URI_COMPONENT: every byte but ALPHA, DIGIT, "-", ".", "_" and "~".
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_COMPONENT = {b: (bytes([b]) if b in _UNRESERVED else b"%%%02X" % b) for b in range(256)}
_HTML = {ord("<"): b"&lt;", ord(">"): b"&gt;", ord("&"): b"&amp;", ord('"'): b"&quot;"}
_JSON = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
         ord("\t"): b"\\t", ord("\b"): b"\\b", ord("\f"): b"\\f"}
_CALLBACK = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")


class Entry:
    """One listed name: its bytes, kind (dir/file/other), mtime and size."""

    __slots__ = ("name", "dir", "file", "mtime", "size")

    def __init__(self, name: bytes, st, dir_: bool, file: bool):
        self.name = name
        self.dir = dir_
        self.file = file
        self.mtime = int(st.st_mtime)
        self.size = st.st_size


class Listing:
    """A 200 listing: ``headers`` then the body from ``pieces()`` (nothing read for HEAD)."""

    __slots__ = ("status", "headers", "entries", "format", "uri", "callback", "exact_size",
                 "offset")

    def __init__(self, content_type, entries, format_, uri: bytes, callback: bytes,
                 exact_size: bool, offset: int):
        self.status = 200
        self.headers = [("Content-Type", content_type)]
        self.entries = entries
        self.format = format_
        self.uri = uri
        self.callback = callback
        self.exact_size = exact_size
        self.offset = offset

    def send(self, conn, request, plan):
        send(conn, request, plan, self)

    def pieces(self):
        """The body, in pieces of about PIECE bytes."""
        make = {"html": self._html, "xml": self._xml}.get(self.format, self._json)
        out = []
        size = 0
        for part in make():
            out.append(part)
            size += len(part)
            if size >= PIECE:
                yield b"".join(out)
                out, size = [], 0
        if out:
            yield b"".join(out)

    # html -----------------------------------------------------------------

    def _html(self):
        uri = _escape_html(self.uri)
        yield (b"<html>\r\n<head><title>Index of " + uri + b"</title></head>\r\n<body>\r\n"
               b"<h1>Index of " + uri + b"</h1><hr><pre><a href=\"../\">../</a>\r\n")
        exact, offset = self.exact_size, self.offset
        for entry in self.entries:
            name = entry.name
            length = len(name)
            parts = [b'<a href="', b"".join(map(_COMPONENT.__getitem__, name)),
                     b'/">' if entry.dir else b'">']
            if length > NAME_LEN:
                parts.append(_escape_html(name[:NAME_LEN - 3]))
                parts.append(b"..&gt;</a>")
            else:
                parts.append(_escape_html(name))
                if entry.dir and length < NAME_LEN:
                    parts.append(b"/")
                    length += 1
                parts.append(b"</a>")
                parts.append(b" " * (NAME_LEN - length))
            tm = time.gmtime(entry.mtime + offset)
            parts.append(b" %02d-%s-%d %02d:%02d " % (tm.tm_mday, _MONTHS[tm.tm_mon - 1],
                                                       tm.tm_year, tm.tm_hour, tm.tm_min))
            parts.append(_html_size(entry, exact))
            parts.append(b"\r\n")
            yield b"".join(parts)
        yield b"</pre><hr></body>\r\n</html>\r\n"

    # json and jsonp ---------------------------------------------------------

    def _json(self):
        if self.callback:
            yield b"/* callback */\r\n" + self.callback + b"("
        yield b"["
        last = len(self.entries) - 1
        for i, entry in enumerate(self.entries):
            kind = b"directory" if entry.dir else b"file" if entry.file else b"other"
            parts = [b'\r\n{ "name":"', _escape_json(entry.name), b'", "type":"', kind,
                     b'", "mtime":"', _http_time(entry.mtime)]
            if entry.file:
                parts.append(b'", "size":%d' % entry.size)
            else:
                parts.append(b'"')
            parts.append(b" }," if i < last else b" }")
            yield b"".join(parts)
        yield b"\r\n]"
        if self.callback:
            yield b");"

    # xml --------------------------------------------------------------------

    def _xml(self):
        yield b'<?xml version="1.0"?>\r\n<list>\r\n'
        for entry in self.entries:
            kind = b"directory" if entry.dir else b"file" if entry.file else b"other"
            tm = time.gmtime(entry.mtime)
            parts = [b"<", kind, b' mtime="%4d-%02d-%02dT%02d:%02d:%02dZ' % tm[:6]]
            if entry.file:
                parts.append(b'" size="%d' % entry.size)
            parts += [b'">', _escape_html(entry.name), b"</", kind, b">\r\n"]
            yield b"".join(parts)
        yield b"</list>\r\n"


def _escape_html(data: bytes) -> bytes:
    """ngx_escape_html: <, >, & and " as entities."""
    if not any(b in _HTML for b in data):
        return data
    return b"".join(_HTML.get(b) or bytes([b]) for b in data)


def _escape_json(data: bytes) -> bytes:
    """ngx_escape_json: backslash, quote and control bytes; others (UTF-8 too) as they are."""
    if not any(b < 0x20 or b in (0x22, 0x5c) for b in data):
        return data
    return b"".join(_JSON.get(b) or (b"\\u%04X" % b if b < 0x20 else bytes([b])) for b in data)


def _html_size(entry, exact: bool) -> bytes:
    if exact:
        return b"                  -" if entry.dir else b"%19d" % entry.size
    if entry.dir:
        return b"      -"
    length = entry.size
    for unit, scale in ((1024 ** 3, b"G"), (1024 ** 2, b"M"), (1024, b"K")):
        # nginx switches units above 1G-1, 1M-1 and 9999 bytes; halves round up.
        if length > (9999 if unit == 1024 else unit - 1):
            size = length // unit + (length % unit > unit // 2 - 1)
            return b"%6d%s" % (size, scale)
    return b" %6d" % length


def _http_time(seconds: int) -> bytes:
    from gateway.http.static import http_date
    return http_date(seconds).encode()


def _callback(request) -> bytes | None:
    """jsonp's ``?callback=``: b"" when absent, None when nginx rejects it (400)."""
    from gateway.http.rewrite import client_context
    for part in request.args.split("&") if request.args else ():
        name, eq, value = part.partition("=")
        if name.lower() != "callback" or not eq:
            continue
        raw = value.encode("utf-8", "surrogateescape")
        if len(raw) > 128:
            log.info(f'*{request.connection_id} '
                     f'client sent too long callback name: "{value}"{client_context(request)}')
            return None
        if not all(b in _CALLBACK for b in raw):
            log.info(f'*{request.connection_id} '
                     f'client sent invalid callback name: "{value}"{client_context(request)}')
            return None
        return raw
    return b""


def listing(request, settings, directory: str):
    """The Listing of ``directory`` (a path ending in "/"), or an error status (int)."""
    from gateway.http.rewrite import client_context
    format_ = settings.autoindex_format
    callback = b""
    if format_ == "jsonp":
        callback = _callback(request)
        if callback is None:
            return 400
        if not callback:
            format_ = "json"
    path = directory[:-1] if len(directory) > 1 else directory
    try:
        names = os.listdir(os.fsencode(path))
    except OSError as exc:
        code = exc.errno
        status = 404 if code in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG) else \
            403 if code == errno.EACCES else 500
        report = log.error if status != 500 else log.crit
        report(f'*{request.connection_id} '
               f'opendir() "{path}" failed ({code}: {os.strerror(code)}){client_context(request)}')
        return status
    ctype = CONTENT_TYPES[format_]
    offset = time.localtime().tm_gmtoff // 60 * 60 if settings.autoindex_localtime else 0
    uri = request.uri.encode("utf-8", "surrogateescape")
    if request.method == "HEAD":
        return Listing(ctype, [], format_, uri, callback, settings.autoindex_exact_size, offset)
    base = os.fsencode(path) + b"/"
    entries = []
    for name in names:
        if name.startswith(b"."):
            continue
        entry = _entry(base + name, name, request)
        if entry is not None:
            entries.append(entry)
    # nginx's order: directories first, then strcmp() of the names.
    entries.sort(key=lambda e: (not e.dir, e.name))
    return Listing(ctype, entries, format_, uri, callback, settings.autoindex_exact_size, offset)


def _entry(path: bytes, name: bytes, request):
    """The Entry of one name as nginx's stat(), then lstat() for dangling links; None: skip."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP):
            if exc.errno == errno.EACCES:
                from gateway.http.rewrite import client_context
                log.crit(f'*{request.connection_id} '
                         f'stat() "{os.fsdecode(path)}" failed ({exc.errno}: '
                         f"{os.strerror(exc.errno)}){client_context(request)}")
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
    mode = st.st_mode
    return Entry(name, st, stat_module.S_ISDIR(mode), stat_module.S_ISREG(mode))


# Sending ---------------------------------------------------------------------

def send(conn, request, plan, listing):
    """Answer with ``listing``: no length, so chunked for HTTP/1.1, else ended by the close."""
    from gateway.http import gzip
    from gateway.http.server import _error_page_status, _header_lines
    status, headers = _error_page_status(request, listing.status, listing.headers)
    deflate = None
    if plan.gzip is not None and plan.gzip.eligible(request, status, headers[0][1], -1, False):
        if plan.gzip.request_ok(request):
            deflate = plan.gzip.deflate(-1)
            headers = headers + [("Content-Encoding", "gzip")]
        if plan.gzip.vary:
            headers = headers + [("Vary", "Accept-Encoding")]
    head = request.method == "HEAD"
    if request.version == 11 and not head:
        headers = headers + [("Transfer-Encoding", "chunked")]
    elif not head:
        conn.keep_alive = False
    conn.send_head(status, _header_lines(headers), plan.add_headers)
    if head:
        conn.finish_response()
        return
    sender = ListingSender(conn, listing.pieces(), request.version == 11)
    if deflate is not None:
        sender.writer = gzip.GzipWriter(conn, deflate)
    conn.handler = sender
    sender.send()


class ListingSender:
    """Streams an autoindex listing as it is made, pausing while the client's buffer is full."""

    __slots__ = ("conn", "pieces", "chunked", "paused", "done", "writer")

    def __init__(self, conn, pieces, chunked):
        self.conn = conn
        self.pieces = pieces
        self.chunked = chunked
        self.paused = False
        self.done = False
        self.writer = None       # a gzip.GzipWriter when the listing goes out compressed

    def send(self):
        from gateway.http import gzip
        while not self.paused and not self.done:
            piece = next(self.pieces, None)
            if piece is None:
                self.done = True
                if self.writer is not None:
                    self.writer.end()
                elif self.chunked:
                    self.conn.send_raw(gzip.LAST_CHUNK)
                self.conn.finish_response()
                return
            if self.writer is not None:
                self.writer.write(piece)
            else:
                self.conn.send_body(gzip.chunk(piece) if self.chunked else piece)

    def client_write_paused(self):
        self.paused = True

    def client_write_resumed(self):
        self.paused = False
        self.send()

    def client_body(self, pieces):
        pass

    def client_body_end(self):
        pass

    def client_aborted(self):
        if not self.done:
            self.done = True
            self.conn.request.status = self.conn.request.status or 499
            self.conn.finish_response()

    def cancel(self):
        self.done = True

    def check_deadline(self, now):
        pass
