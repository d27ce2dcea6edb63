"""gzip: responses compressed on the way out, as nginx's ngx_http_gzip_filter_module does.

Decided as nginx decides: the header filter's test (status 200, 403 or 404, no Content-Encoding,
Content-Length not under gzip_min_length, a gzip_types type, not HEAD) makes the answer vary
on Accept-Encoding; ngx_http_gzip_ok then asks the request (Accept-Encoding, gzip_disable,
gzip_http_version and, behind a proxy (Via), gzip_proxied against the response's headers).
A compressed answer loses Content-Length and Accept-Ranges, its ETag turns weak, and its body
goes out chunked to HTTP/1.1 clients, or delimited by the close for HTTP/1.0.

The body is streamed through one zlib deflate stream with nginx's window and hash sizes
(shrunk for short known lengths) and no flushes, so the same zlib at the same level gives the
same bytes as nginx.  Only the zlib state (a few hundred KiB at most)
and the piece in hand are held.
"""

from __future__ import annotations

import email.utils
import time
import zlib

from gateway.errors import HttpError
from gateway.http import parser, trailers
from gateway.http.proxy import RELAYING, ProxyExchange
from gateway.http.variables import GZIP_RATIO

GZIP_STATUSES = frozenset({200, 403, 404})
VARY_LINE = b"Vary: Accept-Encoding\r\n"
ENCODING_LINE = b"Content-Encoding: gzip\r\n"
CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class GzipPlan:
    """One level's gzip settings, ready for per-request decisions."""

    __slots__ = ("types", "min_length", "level", "wbits", "memlevel", "proxied", "vary",
                 "disable", "msie6", "http_version")
    sub = None              # sub_filter's settings (gateway/http/sub_filter.py's SubFilterPlan)

    def __init__(self, settings):
        self.types = None if settings.gzip_types is None else frozenset(settings.gzip_types)
        self.min_length = settings.gzip_min_length
        self.level = settings.gzip_comp_level
        self.wbits = settings.gzip_window
        self.memlevel = settings.gzip_hash
        self.proxied = settings.gzip_proxied
        self.vary = settings.gzip_vary
        self.disable = settings.gzip_disable
        self.msie6 = settings.gzip_disable_msie6
        self.http_version = settings.gzip_http_version

    # ngx_http_gzip_header_filter's first test ----------------------------

    def eligible(self, request, status: int, content_type: str, length: int,
                 encoded: bool) -> bool:
        """Whether the response could be compressed (and so varies on Accept-Encoding)."""
        # A HEAD is not exempt: nginx marks it header-only after this filter, so its head
        # says gzip (without a length) as a GET's would.
        if status not in GZIP_STATUSES or encoded:
            return False
        if length != -1 and length < self.min_length:
            return False
        if self.types is None:
            return True
        return bool(content_type) and content_type.lower() in self.types

    # ngx_http_gzip_ok ----------------------------------------------------

    def request_ok(self, request, response=None) -> bool:
        """Whether this client gets gzip; ``response``: the proxied response's headers."""
        accept = request.header("accept-encoding")
        if accept is None or len(accept) < 4:
            return False
        if not accept.startswith("gzip,") and not accepts_gzip(accept):
            return False
        agent = request.header("user-agent")
        if self.msie6 and agent is not None and is_msie6(agent):
            return False
        if request.version < self.http_version:
            return False
        if request.header("via") is not None and not self._proxied_ok(request, response or ()):
            return False
        if self.disable and agent is not None:
            for regex in self.disable:
                if regex.search(agent):
                    return False
        return True

    def _proxied_ok(self, request, response) -> bool:
        """gzip_proxied: which responses to a request that came through a proxy are compressed."""
        allowed = self.proxied
        if "off" in allowed:
            return False
        if "any" in allowed:
            return True
        if "auth" in allowed and request.header("authorization") is not None:
            return True
        fields = {}
        for lower, _name, value in response:
            fields.setdefault(lower, []).append(value.decode("latin-1"))
        if b"expires" in fields:
            if "expired" not in allowed:
                return False
            expires = _http_time(fields[b"expires"][0])
            if expires is None:
                return False
            # The upstream's Date is hidden (proxy_hide_header's default): nginx takes its clock.
            return expires < int(time.time())
        if b"cache-control" in fields:
            # nginx's ngx_http_parse_multi_header_lines: a bare token ("no-cache=..." is not).
            tokens = {part.strip(" ").lower()
                      for value in fields[b"cache-control"] for part in value.split(",")}
            return any(word in allowed and word in tokens
                       for word in ("no-cache", "no-store", "private"))
        if "no_last_modified" in allowed and b"last-modified" in fields:
            return False
        if "no_etag" in allowed and b"etag" in fields:
            return False
        return True

    def deflate(self, length: int) -> "Deflate":
        return Deflate(self.level, self.wbits, self.memlevel, length)


def accepts_gzip(value: str) -> bool:
    """nginx's ngx_http_gzip_accept_encoding: "gzip" as a coding, without "q=0"."""
    lower = value.lower()
    start = 0
    while True:
        at = lower.find("gzip", start)
        if at < 0:
            return False
        if at == 0 or lower[at - 1] in ", ":
            break
        start = at + 4
    rest = value[at + 4:]
    i = 0
    while i < len(rest):
        c = rest[i]
        i += 1
        if c == ",":
            return True
        if c == ";":
            break
        if c != " ":
            return False
    else:
        return True
    while i < len(rest):
        c = rest[i]
        i += 1
        if c in "qQ":
            break
        if c != " ":
            return False
    else:
        return True
    if i + 2 > len(rest) or rest[i] != "=":
        return False
    return _quantity(rest[i + 1:]) > 0


def _quantity(text: str) -> int:
    """nginx's ngx_http_gzip_quantity: "1", "0.5", "0.001" in thousandths-ish; 0 if invalid."""
    if not text or text[0] not in "01":
        return 0
    q = (ord(text[0]) - 48) * 100
    if len(text) == 1 or text[1] in ", ":
        return q
    if text[1] != ".":
        return 0
    digits = 0
    for c in text[2:]:
        if c in ", ":
            break
        if not "0" <= c <= "9":
            return 0
        q += ord(c) - 48       # nginx adds each digit as it comes, whatever its place
        digits += 1
    if q > 100 or digits > 3:
        return 0
    return q


def is_msie6(agent: str) -> bool:
    """nginx's r->headers_in.msie6: MSIE 4, 5, or 6 without SV1, and not Opera."""
    at = agent.find("MSIE ")
    if at < 0 or at + 7 >= len(agent) or "Opera" in agent:
        return False
    if agent[at + 6] != ".":
        return False
    major = agent[at + 5]
    return major in "45" or (major == "6" and "SV1" not in agent[at + 8:])


def _http_time(text: str) -> int | None:
    try:
        parsed = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError):
        return None
    return None if parsed is None else int(email.utils.mktime_tz(parsed))


def weak_etag(value: bytes) -> bytes | None:
    """nginx's ngx_http_weak_etag: W/ in front; an ETag that is not quoted is dropped."""
    if value[:2] == b"W/" and len(value) > 2:
        return value
    if value[:1] != b'"':
        return None
    return b"W/" + value


def upstream_type(value: bytes) -> str:
    """The part of an upstream Content-Type nginx tests: before "; charset=", else all of it."""
    text = value.decode("latin-1")
    at = text.find(";")
    while at >= 0:
        rest = text[at + 1:].lstrip(" ")
        if not rest:
            return text
        if rest[:8].lower() == "charset=":
            return text[:at]
        at = text.find(";", at + 1)
    return text


def plan_of(request) -> GzipPlan | None:
    """The gzip plan of the level answering ``request``, or None when gzip is off there."""
    where = request.location if request.location is not None else request.server
    return plan_for(where.settings) if where is not None and where.settings.gzip else None


_plans: dict = {}


def plan_for(settings) -> GzipPlan:
    """One GzipPlan per settings object (settings live as long as the worker's config)."""
    entry = _plans.get(id(settings))
    if entry is None or entry[0] is not settings:
        entry = _plans[id(settings)] = (settings, GzipPlan(settings))
    return entry[1]


class Deflate:
    """One gzip member, compressed piece by piece; $gzip_ratio once finished."""

    __slots__ = ("stream", "size_in", "size_out")

    def __init__(self, level: int, wbits: int, memlevel: int, length: int = -1):
        if length > 0:
            # nginx's ngx_http_gzip_filter_memory: a window no larger than the body needs
            # (zlib's usable window is 262 bytes short of its size).
            while length < (1 << (wbits - 1)) - 262:
                wbits -= 1
                memlevel -= 1
        # zlib writes the gzip header and trailer itself, as nginx has it do (16 + wbits).
        self.stream = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, max(memlevel, 1))
        self.size_in = 0
        self.size_out = 0

    def compress(self, data) -> bytes:
        self.size_in += len(data)
        out = self.stream.compress(data)
        self.size_out += len(out)
        return out

    def finish(self) -> bytes:
        out = self.stream.flush(zlib.Z_FINISH)
        self.size_out += len(out)
        return out

    def ratio(self) -> str:
        """nginx's $gzip_ratio: in/out with two decimals, rounded half up."""
        zin, zout = self.size_in, self.size_out
        whole, frac = zin // zout, zin * 100 // zout % 100
        if zin * 1000 // zout % 10 > 4:
            frac += 1
            if frac > 99:
                whole, frac = whole + 1, 0
        return f"{whole}.{frac:02d}"


def record_ratio(request, deflate: Deflate) -> None:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[GZIP_RATIO] = deflate.ratio()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# In-memory answers: return, error pages (the connections' send_simple) ---------------------

def simple(conn, status: int, body: bytes, content_type, extra: bytes, add_headers,
           trailing=None):
    """send_simple under gzip: sends a compressed answer and returns None, or returns the
    ``extra`` header lines for the plain answer (with Vary when it varies). ``trailing``:
    add_trailer's (settings, status) when its trailers end the answer."""
    request = conn.request
    plan = plan_of(request)
    ctype = content_type.decode("latin-1") if content_type else ""
    if plan is None or not plan.eligible(request, status, ctype, len(body), False):
        return extra
    if not plan.request_ok(request):
        return extra + VARY_LINE if plan.vary else extra
    lines = [b"Content-Type: %s\r\n" % content_type if content_type else b"", extra]
    lines.append(ENCODING_LINE)
    if plan.vary:
        lines.append(VARY_LINE)
    data = b""
    if request.method != "HEAD":
        writer = GzipWriter(conn, plan.deflate(len(body)), trailing)
        if writer.chunked:
            lines.append(CHUNKED_LINE)
        data = writer.last(body)
    conn.send_head(status, b"".join(lines), add_headers, data)
    conn.finish_response()
    return None


# Static files ------------------------------------------------------------------------------

def static_decision(plan: GzipPlan | None, request, result):
    """For a FileResponse: (Deflate or None, whether Vary is added)."""
    if plan is None:
        return None, False
    headers = dict(result.headers)
    status, length = result.status, result.length
    if status == 206:
        # nginx's range filter runs after gzip's: gzip judged the whole file's 200.
        status, length = 200, int(headers["Content-Range"].rpartition("/")[2])
    if not plan.eligible(request, status, headers.get("Content-Type", ""), length,
                         "Content-Encoding" in headers):
        return None, False
    if result.status != 200 or not plan.request_ok(request):
        return None, plan.vary
    return plan.deflate(length), plan.vary


def compressed_headers(request, headers, vary: bool):
    """A file's headers once gzipped: no length, no ranges, a weak ETag; chunked for HTTP/1.1
    (a GzipWriter frames the body)."""
    out = []
    for name, value in headers:
        if name in ("Content-Length", "Accept-Ranges"):
            continue
        if name == "ETag":
            weak = weak_etag(value.encode("latin-1"))
            if weak is None:
                continue
            value = weak.decode("latin-1")
        out.append((name, value))
    out.append(("Content-Encoding", "gzip"))
    if vary:
        out.append(("Vary", "Accept-Encoding"))
    if request.version == 11 and request.method != "HEAD":
        out.append(("Transfer-Encoding", "chunked"))
    return out


class GzipWriter:
    """Compresses a body written piece by piece and frames it for the client.

    ``trailing``: (settings, status) when add_trailer applies: the compressed body ends with
    the trailers, as nginx's chunked filter ends a gzipped body (trailers.py).
    """

    __slots__ = ("conn", "deflate", "chunked", "trailing")

    def __init__(self, conn, deflate: Deflate, trailing=None):
        self.conn = conn
        self.deflate = deflate
        self.trailing = trailing
        self.chunked = conn.request.version == 11
        if trailing is not None and getattr(conn, "stream_id", None) is not None:
            self.chunked = True
            conn.expect_trailers()      # HTTP/2: our chunks become DATA, then the trailers
        if not self.chunked:
            conn.keep_alive = False      # HTTP/1.0: the close ends the body

    def write(self, data) -> None:
        out = self.deflate.compress(data)
        if out:
            self.conn.send_body(chunk(out) if self.chunked else out)

    def end(self) -> None:
        self.conn.send_body(self.last(b""))

    def last(self, data) -> bytes:
        """The rest of the body, compressed and framed, through its end."""
        deflate = self.deflate
        out = deflate.compress(data) + deflate.finish() if data else deflate.finish()
        record_ratio(self.conn.request, deflate)
        if not self.chunked:
            return out
        if self.trailing is not None:
            settings, status = self.trailing
            self.conn.request.status = status   # rendered before the head when it is all at hand
            return chunk(out) + trailers.last_chunk(settings, self.conn.request, status)
        return chunk(out) + LAST_CHUNK


# Proxied responses -------------------------------------------------------------------------

def body_facts(headers, kind: str):
    """What a filter decides on in an upstream's head: (its type without parameters, whether
    it has a Content-Encoding, its Content-Length or -1); ``kind``, its body framing."""
    ctype, encoded, known = "", False, -1
    for lower, _name, value in headers:
        if lower == b"content-type":
            ctype = upstream_type(value)
        elif lower == b"content-encoding" and value.strip():
            encoded = True
        elif lower == b"content-length" and value.strip().isdigit():
            known = int(value)      # a HEAD's length too (its framing is "none")
    if kind != "length" and kind != "none":
        known = -1
    return ctype, encoded, known


class GzipProxyExchange(ProxyExchange):
    """A ProxyExchange for locations with gzip on: the response body through a GzipWriter.

    Locations without gzip never get here: their requests keep the compiled exchange.
    """

    __slots__ = ("writer",)

    def __init__(self, conn, request, plan, app):
        self.writer = None
        super().__init__(conn, request, plan, app)

    def _respond(self, version, status, headers, rest):
        request = self.request
        plan = self.plan.gzip
        kind, length = parser.response_body_framing(status, headers, request.method)
        ctype, encoded, known = body_facts(headers, kind)
        if not plan.eligible(request, status, ctype, known, encoded):
            return super()._respond(version, status, headers, rest)
        if not plan.request_ok(request, headers):
            if plan.vary:
                headers = headers + [(b"vary", b"Vary", b"Accept-Encoding")]
            return super()._respond(version, status, headers, rest)
        upstream_close = version == 10
        lines = []
        for lower, name, value in headers:
            if lower in self.hidden:
                if lower == b"connection" and b"close" in value.lower():
                    upstream_close = True
                continue
            if lower == b"content-length" or lower == b"accept-ranges":
                continue
            if lower == b"etag":
                value = weak_etag(value)
                if value is None:
                    continue
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(ENCODING_LINE)
        if plan.vary:
            lines.append(VARY_LINE)
        trailing = None
        if self.proxy.trailers and trailers.expected(self.plan.settings, request, status):
            trailing = (self.plan.settings, status)
        self.send_filtered(status, headers, lines, kind, length, rest, upstream_close,
                           lambda: GzipWriter(self.conn,
                                              plan.deflate(length if kind == "length" else -1),
                                              trailing))

    def send_filtered(self, status, headers, lines, kind, length, rest, upstream_close,
                      make_writer):
        """Answer with ``lines`` (the head's fields) and the body through the writer
        ``make_writer()`` makes (gzip's, sub_filter's): the framing ours, chunked to
        HTTP/1.1 clients; a HEAD's head alone; a body that came with the head in one write."""
        self.pace(headers, self.proxy.paced
                  or any(lower == b"x-accel-limit-rate" for lower, _, _ in headers))
        if kind == "none":          # HEAD: the head says how it would be sent, no body
            self.state = RELAYING
            self.reusable = not upstream_close and self.proxy.keepalive
            self.conn.send_head(status, b"".join(lines), self.plan.add_headers)
            self._complete()
            return
        if self.request.version == 11:
            lines.append(CHUNKED_LINE)
        if kind == "chunked":
            self.decoder = parser.ChunkedDecoder()
        elif kind == "close":
            upstream_close = True
        self.framing = kind
        self.remaining = length
        self.reusable = not upstream_close and self.proxy.keepalive
        self.state = RELAYING
        self.writer = make_writer()
        if kind == "length" and len(rest) >= length:
            # The whole body came with the head: head and filtered body in one write.
            rest, _ = self._length_part(rest)
            self.conn.send_head(status, b"".join(lines), self.plan.add_headers,
                                self.writer.last(rest))
            self._complete()
            return
        self.conn.send_head(status, b"".join(lines), self.plan.add_headers)
        if rest:
            self._relay(rest)

    def _relay(self, data):
        writer = self.writer
        if writer is None:
            return super()._relay(data)
        kind = self.framing
        if kind == "length":
            data, done = self._length_part(data)
            if done:
                self._end(data)
            else:
                writer.write(data)
        elif kind == "chunked":
            try:
                used, pieces = self.decoder.feed(data, True)
            except HttpError:
                self._abort("upstream sent invalid chunked response")
                return
            if pieces:
                writer.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            if self.decoder.done:
                if used < len(data):
                    self.reusable = False
                self._end()
        else:
            writer.write(data)

    def upstream_eof(self):
        if self.writer is not None and self.state == RELAYING and self.framing == "close":
            self.reusable = False
            self._end()
            return
        super().upstream_eof()

    def _end(self, data=b""):
        self.conn.send_body(self.writer.last(data))
        self._complete()


# The exchange a location with this plan proxies with (SubFilterPlan has its own).
GzipPlan.exchange_class = GzipProxyExchange


# gzip_static -------------------------------------------------------------------------------

def serve_static_gz(request, location):
    """nginx's ngx_http_gzip_static_handler: (the answer from "FILE.gz" or None, whether the
    plain answer is to vary on Accept-Encoding because a .gz was there for other clients)."""
    from gateway.http import static      # static imports nothing of ours; loaded with it
    settings = location.settings
    mode = settings.gzip_static
    ok = mode == "always" or plan_for(settings).request_ok(request)
    if not ok and not settings.gzip_vary:
        return None, False
    # nginx 1.22 (Debian's) answers ranges of a .gz with the whole file; later ones allow them.
    result = static.serve_static(request, location, ranges=False, suffix=".gz")
    if result is None:
        return None, False
    if not ok:
        return None, True
    if hasattr(result, "headers"):
        result.headers[:] = [h for h in result.headers if h[0] != "Accept-Ranges"]
    if mode == "on" and settings.gzip_vary and hasattr(result, "headers") \
            and result.status in (200, 206, 304):
        result.headers.append(("Vary", "Accept-Encoding"))
    return result, False
