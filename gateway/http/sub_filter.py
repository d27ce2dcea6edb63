"""sub_filter: strings replaced in proxied and static responses, as nginx's ngx_http_sub_module.

nginx's header filter takes a response of a ``sub_filter_types`` type whose length is not 0:
it drops Content-Length (the body goes out chunked to HTTP/1.1 clients, delimited by the close
for HTTP/1.0), and Last-Modified and ETag unless ``sub_filter_last_modified on`` (which keeps
them, the ETag made weak). The body is then matched as it streams: case-insensitively (ASCII),
leftmost first, at one place the first pattern in config order that matches, each pattern once
with ``sub_filter_once on`` (the default). A match split across upstream reads is held until it
is decided; what is held when the body ends goes out as it is. Replacements may hold variables,
evaluated at their first use; search strings with variables are evaluated with the head (an
empty one is left out, and with none left the response is not filtered).

Responses with a Content-Encoding are left alone (nginx 1.22 would match in the encoded bytes).
Locations without sub_filter never get here; gzip, when on too, compresses what comes out.
"""

from __future__ import annotations

from gateway.http import parser, trailers
from gateway.http.gzip import (ENCODING_LINE, LAST_CHUNK, VARY_LINE, GzipPlan, GzipProxyExchange,
                               GzipWriter, body_facts, chunk, weak_etag)
from gateway.http.variables import compile_template


class SubFilterPlan(GzipPlan):
    """A location's gzip plan when it has sub_filter: compresses only if gzip is on, and
    routes proxied answers through SubFilterProxyExchange (plan.gzip is the slot the proxy
    paths already test, so other locations pay nothing)."""

    __slots__ = ("sub", "compress")

    def __init__(self, settings):
        super().__init__(settings)
        self.sub = SubSettings(settings)
        self.compress = settings.gzip

    def eligible(self, request, status, content_type, length, encoded) -> bool:
        return self.compress and GzipPlan.eligible(self, request, status, content_type, length,
                                                   encoded)

    def request_ok(self, request, response=None) -> bool:
        return self.compress and GzipPlan.request_ok(self, request, response)


class SubSettings:
    """One level's sub_filter settings, compiled."""

    __slots__ = ("pairs", "once", "types", "last_modified", "dynamic", "static_matcher")

    def __init__(self, settings):
        self.pairs = [(compile_template(search), compile_template(value))
                      for search, value in settings.sub_filters]
        self.once = settings.sub_filter_once
        self.types = None if settings.sub_filter_types is None \
            else frozenset(settings.sub_filter_types)
        self.last_modified = settings.sub_filter_last_modified
        self.dynamic = any(not search.static for search, _ in self.pairs)

    def applies(self, content_type: str, length: int, encoded: bool) -> bool:
        """nginx's header filter test (and ours: no Content-Encoding)."""
        if length == 0 or encoded:
            return False
        return self.types is None or content_type.lower() in self.types

    def stream(self, request) -> SubStream | None:
        """The matcher for one response; None when every search string came out empty."""
        patterns, values = [], []
        for search, value in self.pairs:
            text = search.render(request).encode("utf-8").lower()
            if text:
                patterns.append(text)
                values.append(value)
        if not patterns:
            return None
        return SubStream(request, patterns, values, self.once)

    def fields(self, headers):
        """The response's (name, value) fields once filtered: no length, no ranges, no
        Last-Modified or ETag (a weak ETag with sub_filter_last_modified)."""
        out = []
        for name, value in headers:      # bytes from upstream, text from static files
            lower = name.lower()
            if lower.__class__ is bytes:
                lower = lower.decode("latin-1")
            if lower in ("content-length", "accept-ranges"):
                continue
            if lower in ("last-modified", "etag"):
                if not self.last_modified:
                    continue
                if lower == "etag":
                    if value.__class__ is bytes:
                        value = weak_etag(value)
                    else:
                        weak = weak_etag(value.encode("latin-1"))
                        value = weak.decode("latin-1") if weak is not None else None
                    if value is None:
                        continue
            out.append((name, value))
        return out


class SubStream:
    """Replaces the patterns in a body fed piece by piece (ngx_http_sub_parse's decisions)."""

    __slots__ = ("request", "patterns", "values", "rendered", "active", "once", "shortest",
                 "longest", "held", "through")

    def __init__(self, request, patterns: list[bytes], values: list, once: bool):
        self.request = request
        self.patterns = patterns
        self.values = values
        self.rendered: list = [None] * len(patterns)
        self.active = list(range(len(patterns)))     # config order: the first match wins
        self.once = once
        self.shortest = min(len(p) for p in patterns)
        self.longest = max(len(p) for p in patterns)
        self.held = b""           # a possible match not decided yet
        self.through = False      # every pattern used once: the rest passes as it is

    def feed(self, data: bytes) -> bytes:
        """What can go out after ``data``; a possible match at the end is held back."""
        if self.through:
            return data
        buf = self.held + data if self.held else bytes(data)
        lower = buf.lower()
        end = len(buf)
        out = []
        pos = 0
        while True:
            best = -1
            for i in self.active:
                found = lower.find(self.patterns[i], pos)
                if found >= 0 and (best < 0 or found < best):
                    best = found
            # Before ``tail`` every pattern fits whole: no partial match to wait for there.
            tail = max(pos, end - self.longest + 1)
            at, index = -1, -1
            if 0 <= best < tail:
                at = best
                for i in self.active:
                    if lower.startswith(self.patterns[i], at):
                        index = i
                        break
            else:
                at, index = self._tail(lower, tail, end)
                if index < 0:
                    out.append(buf[pos:at])
                    self.held = buf[at:]
                    return b"".join(out)
            out.append(buf[pos:at])
            out.append(self._value(index))
            pos = at + len(self.patterns[index])
            if self.once:
                self.active.remove(index)
                if not self.active:
                    self.through = True
                    out.append(buf[pos:])
                    self.held = b""
                    return b"".join(out)

    def _tail(self, lower: bytes, start: int, end: int) -> tuple[int, int]:
        """Where nginx stops in the last bytes: (position, pattern) of a match, or
        (position, -1) from which it holds (``end`` when nothing is held)."""
        patterns = self.patterns
        for at in range(start, end):
            left = end - at
            if left < self.shortest:
                return at, -1        # not examined until more comes
            for i in self.active:
                pattern = patterns[i]
                if left >= len(pattern):
                    if lower.startswith(pattern, at):
                        return at, i
                elif pattern.startswith(lower[at:]):
                    return at, -1    # a partial match: decided by what comes next
        return end, -1

    def finish(self) -> bytes:
        """The end of the body: what was held goes out unreplaced, as with nginx."""
        held, self.held = self.held, b""
        return held

    def _value(self, index: int) -> bytes:
        value = self.rendered[index]
        if value is None:
            value = self.rendered[index] = \
                self.values[index].render(self.request).encode("utf-8")
        return value


class PlainWriter:
    """Frames a filtered body for the client as GzipWriter does, uncompressed."""

    __slots__ = ("conn", "chunked", "trailing")

    def __init__(self, conn, trailing=None):
        self.conn = conn
        self.trailing = trailing
        self.chunked = conn.request.version == 11
        if trailing is not None and getattr(conn, "stream_id", None) is not None:
            self.chunked = True
            conn.expect_trailers()
        if not self.chunked:
            conn.keep_alive = False      # HTTP/1.0: the close ends the body

    def write(self, data) -> None:
        if data:
            self.conn.send_body(chunk(data) if self.chunked else data)

    def last(self, data) -> bytes:
        if not self.chunked:
            return data
        tail = LAST_CHUNK
        if self.trailing is not None:
            settings, status = self.trailing
            self.conn.request.status = status
            tail = trailers.last_chunk(settings, self.conn.request, status)
        return (chunk(data) if data else b"") + tail


class SubWriter:
    """The body through a SubStream, then through the client's writer (plain or gzip)."""

    __slots__ = ("conn", "stream", "inner")

    def __init__(self, conn, stream: SubStream, inner):
        self.conn = conn
        self.stream = stream
        self.inner = inner

    def write(self, data) -> None:
        out = self.stream.feed(data)
        if out:
            self.inner.write(out)

    def end(self) -> None:
        self.conn.send_body(self.last(b""))

    def last(self, data) -> bytes:
        stream = self.stream
        out = stream.feed(data) if data else b""
        return self.inner.last(out + stream.finish())


def _writer(conn, request, plan, status, ctype, trailing):
    """(inner writer, gzip's header lines) for a filtered body of ``plan``'s location."""
    gz = plan.gzip
    if not gz.eligible(request, status, ctype, -1, False):
        return PlainWriter(conn, trailing), []
    if not gz.request_ok(request):
        return PlainWriter(conn, trailing), [VARY_LINE] if gz.vary else []
    lines = [ENCODING_LINE, VARY_LINE] if gz.vary else [ENCODING_LINE]
    return GzipWriter(conn, gz.deflate(-1), trailing), lines


# Proxied responses -------------------------------------------------------------------------

class SubFilterProxyExchange(GzipProxyExchange):
    """A ProxyExchange for locations with sub_filter: a filtered body through a SubWriter;
    other responses as GzipProxyExchange answers them (compressed only with gzip on)."""

    __slots__ = ()

    def _respond(self, version, status, headers, rest):
        request = self.request
        sub = self.plan.gzip.sub
        kind, length = parser.response_body_framing(status, headers, request.method)
        ctype, encoded, known = body_facts(headers, kind)
        stream = sub.stream(request) if sub.applies(ctype, known, encoded) else None
        if stream is None:
            return super()._respond(version, status, headers, rest)
        upstream_close = version == 10
        kept = []
        for lower, name, value in headers:
            if lower in self.hidden:
                if lower == b"connection" and b"close" in value.lower():
                    upstream_close = True
                continue
            kept.append((name, value))
        trailing = None
        if self.proxy.trailers and trailers.expected(self.plan.settings, request, status):
            trailing = (self.plan.settings, status)
        inner, gzip_lines = _writer(self.conn, request, self.plan, status, ctype, trailing)
        lines = [b"%s: %s\r\n" % (name, value) for name, value in sub.fields(kept)]
        lines += gzip_lines
        self.send_filtered(status, headers, lines, kind, length, rest, upstream_close,
                           lambda: SubWriter(self.conn, stream, inner))


SubFilterPlan.exchange_class = SubFilterProxyExchange


# Static files ------------------------------------------------------------------------------

def file_filter(conn, request, plan, status: int, headers: list, length: int, sub=None):
    """For a static file's answer: (headers, writer maker) when it is filtered, else None.

    The writer maker takes the add_trailer ``trailing`` and gives FileSender's writer."""
    if sub is None:
        sub = plan.gzip.sub
    ctype, encoded = "", False
    for name, value in headers:
        if name == "Content-Type":
            ctype = value.partition(";")[0].strip()
        elif name == "Content-Encoding":
            encoded = True
    if status != 200 or not sub.applies(ctype, length, encoded):
        return None
    stream = sub.stream(request)
    if stream is None:
        return None
    out = sub.fields(headers)

    def make(trailing):
        inner, gzip_lines = _writer(conn, request, plan, status, ctype, trailing)
        for line in gzip_lines:
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(": ")
            out.append((name, value))
        if request.version == 11 and request.method != "HEAD":
            out.append(("Transfer-Encoding", "chunked"))
        return SubWriter(conn, stream, inner)
    return out, make
