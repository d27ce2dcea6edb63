"""Static files as nginx serves them: root/alias, try_files, index, conditional GETs, ranges.

One call, ``serve_static(request, location)``, runs what nginx runs for a
location without a proxy handler: the try_files (precontent) phase, the index
and static content handlers, then the not_modified and range header filters.
It returns what to send; the server does the I/O.

Behaviour mirrored from nginx 1.22 defaults:
- Symlinks are followed, also out of the root, unless ``disable_symlinks`` says
  otherwise (gateway/http/symlinks.py); the URI is already normalised by the
  server, so ".." cannot climb out of root.
- Hidden files are served like any other (nginx has no rule about them).
- POST to an existing file is 405, to a missing one 404; methods other than
  GET/HEAD/POST are 405 (after try_files, which runs for every method).
- ``etag on``, ``absolute_redirect on``, ``port_in_redirect on``,
  ``server_name_in_redirect off``, no open_file_cache; ``if_modified_since`` (exact by
  default) and ``max_ranges`` (no limit by default) as configured.
- A directory without an index file is listed when ``autoindex`` is on
  (gateway/http/autoindex.py), else answered 403.
An alias in a regex location maps to the alias itself, its captures filled in.
Multipart ranges up to 1 MiB in total are built in memory, larger ones are streamed
from the file (gateway/http/ranges.py).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat as stat_module
from dataclasses import dataclass, field

from gateway.errors import ConfigError
from gateway.http.mime import content_type
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log

# Results --------------------------------------------------------------------


@dataclass(slots=True)
class FileResponse:
    """Send ``length`` bytes of ``path`` from ``offset`` (headers only for HEAD)."""

    status: int
    headers: list[tuple[str, str]]
    path: str
    offset: int
    length: int


@dataclass(slots=True)
class BytesResponse:
    """Send ``body`` (headers only for HEAD; ``Content-Length`` is in ``headers`` when known)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class InternalRedirect:
    """Re-route the request to ``uri`` (a path, or ``@name`` for a named location).

    ``args`` is None when the current ``$args`` stay; otherwise it is the new
    ``$args`` (possibly empty).  For try_files' URI fallback ``uri`` also
    carries ``?args`` exactly as written, for servers that split it themselves.
    """

    uri: str
    args: str | None = None


@dataclass(slots=True)
class ErrorStatus:
    """Answer with nginx's page for ``status``, plus ``headers`` (Location, Content-Range)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)


_GET_HEAD_POST = frozenset(("GET", "HEAD", "POST"))
_MULTIPART_LIMIT = 1024 * 1024


def serve_static(request, location, ranges: bool = True, suffix: str = ""):
    """Answer ``request`` from the file system with ``location``'s settings.

    ``ranges=False`` ignores Range (for a file gzip compresses); ``suffix=".gz"`` is
    gzip_static's try of the precompressed file: None when there is none to send.
    """
    settings = location.settings
    uri = request.uri
    if not uri.startswith("/") or "\x00" in uri:
        return ErrorStatus(400)

    try:
        if settings.try_files:
            found = _try_files(request, location, settings, uri)
            if not isinstance(found, str):
                return None if suffix else found
            uri = found

        if suffix:
            if request.method not in ("GET", "HEAD") or uri.endswith("/"):
                return None
        elif request.method not in _GET_HEAD_POST:
            return ErrorStatus(405)
        if uri.endswith("/"):
            return _index(request, location, settings, uri)
        return _file(request, location, settings, uri, ranges, suffix)
    except ConfigError:
        # A template with an unknown variable slipped past config loading.
        return ErrorStatus(500)


# Paths ----------------------------------------------------------------------

_templates: dict = {}


def _render(text: str, request) -> str:
    """``text`` with its ``$variables`` filled in (compiled once per distinct text)."""
    if "$" not in text:
        return text
    template = _templates.get(text)
    if template is None:
        template = _templates[text] = compile_template(text)
    return template.render(request)


def _alias_length(location, settings) -> int:
    """How many leading URI characters ``alias`` replaces; 0 without alias, -1 for a regex."""
    if settings.alias is None:
        return 0
    if getattr(location, "modifier", "") in ("~", "~*"):
        return -1
    return len(location.pattern)


def _base(request, settings) -> str:
    """The directory a URI (or try_files name) is appended to: alias or root."""
    if settings.alias is not None:
        return _render(settings.alias, request)
    root = settings.root
    # nginx drops a trailing slash of "root" (never of "alias": see index).
    return _render(root[:-1] if root.endswith("/") else root, request)


def request_filename(request, location) -> str:
    """$request_filename: the file the request's URI maps to with this level's root or alias."""
    return _map(request, location, location.settings, request.uri)


def _map(request, location, settings, uri: str) -> str:
    """The file for ``uri`` (``ngx_http_map_uri_to_path``)."""
    alias = _alias_length(location, settings)
    if alias < 0:
        return _base(request, settings)
    return _base(request, settings) + uri[alias:]


# try_files ------------------------------------------------------------------

def _try_files(request, location, settings, uri: str):
    """The URI to serve (str), or the InternalRedirect/ErrorStatus that ends try_files."""
    items = settings.try_files
    alias = _alias_length(location, settings)
    base = _base(request, settings)
    last = len(items) - 1
    for i, item in enumerate(items):
        test_dir = i < last and item.endswith("/")
        name = item[:-1] if test_dir else item
        rendered = _render(name, request)
        # nginx strips the location prefix from names built with variables
        # (typically $uri) when alias is in use, so alias + rest is tested.
        if alias > 0 and "$" in name and rendered[:alias] == uri[:alias] \
                and len(rendered) >= alias:
            rendered = rendered[alias:]

        if i == last:
            if item.startswith("="):
                code = item[1:]
                return ErrorStatus(int(code) if code.isdigit() else 500)
            if rendered.startswith("@"):
                return InternalRedirect(rendered)
            _, sep, args = rendered.partition("?")
            # Without "?" nginx empties $args for the new URI.
            return InternalRedirect(rendered, args if sep else "")

        try:
            st = _stat(request, settings, base + rendered)
        except (OSError, ValueError):
            continue
        if stat_module.S_ISDIR(st.st_mode) != test_dir:
            continue
        if alias > 0:
            return uri[:alias] + rendered
        return rendered
    return ErrorStatus(404)   # not reached: try_files has at least two arguments


# index ----------------------------------------------------------------------

def _index(request, location, settings, uri: str):
    """A directory URI: redirect to its first existing index file, else 403/404."""
    base = _map(request, location, settings, uri)
    if settings.random_index:
        from gateway.http import random_index
        found = random_index.pick(request, base, uri)
        if found is not None:
            return found
    dir_tested = False
    for index in settings.index:
        name = _render(index, request)
        if name.startswith("/"):
            return InternalRedirect(name)
        try:
            _stat(request, settings, base + name)
        except ValueError:
            return ErrorStatus(404)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.ELOOP, errno.EMLINK):
                return ErrorStatus(403)
            if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
                return ErrorStatus(404)
            if not dir_tested:
                status = _test_dir(request, settings, base)
                if status:
                    return ErrorStatus(status)
                dir_tested = True
            if exc.errno == errno.ENOENT:
                continue
            return ErrorStatus(500)
        return InternalRedirect(uri + name)
    if settings.autoindex and request.method in ("GET", "HEAD"):
        from gateway.http import autoindex
        found = autoindex.listing(request, settings, base)
        return found if not isinstance(found, int) else ErrorStatus(found)
    # No index file and no listing: nginx's content phase forbids the directory.
    return ErrorStatus(403)


def _stat(request, settings, path: str):
    """os.stat, or the walk disable_symlinks asks for."""
    if settings.disable_symlinks == "off":
        return os.stat(path)
    from gateway.http import symlinks
    return symlinks.stat_path(request, settings, path)


def _log_open_failure(request, path: str, exc: OSError) -> None:
    """nginx's ``open() "PATH" failed (2: No such file or directory)`` error line."""
    from gateway.http.rewrite import client_context
    log.error(f'*{request.connection_id} '
              f'open() "{path}" failed ({exc.errno}: {os.strerror(exc.errno)})'
              f"{client_context(request)}")


def _test_dir(request, settings, path: str) -> int:
    """0 if the directory exists (or cannot be searched), else nginx's status."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]      # nginx tests the directory itself, not "dir/."
    try:
        st = _stat(request, settings, path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return 404
        if exc.errno in (errno.EACCES, errno.ELOOP, errno.EMLINK):
            return 0 if exc.errno == errno.EACCES else 403
        return 500
    return 0 if stat_module.S_ISDIR(st.st_mode) else 500


# The file itself ------------------------------------------------------------

def _file(request, location, settings, uri: str, ranges: bool = True, suffix: str = ""):
    """A file URI: the file with conditional and range handling, or a redirect/error."""
    path = _map(request, location, settings, uri) + suffix
    try:
        # Non-blocking open, as nginx, so a FIFO cannot hang us.
        if settings.disable_symlinks == "off":
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        else:
            from gateway.http import symlinks
            fd = symlinks.open_file(request, settings, path)
    except ValueError:
        return None if suffix else ErrorStatus(404)
    except OSError as exc:
        if suffix:
            return None     # gzip_static declines: the file itself is answered
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            if settings.log_not_found:
                _log_open_failure(request, path, exc)
            return ErrorStatus(404)
        _log_open_failure(request, path, exc)
        if exc.errno in (errno.EACCES, errno.ELOOP, errno.EMLINK):
            return ErrorStatus(403)
        return ErrorStatus(500)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)

    mode = st.st_mode
    if suffix and stat_module.S_ISDIR(mode):
        return None
    if stat_module.S_ISDIR(mode):
        return ErrorStatus(301, [("Location", _directory_location(request, uri))])
    if not stat_module.S_ISREG(mode):
        return ErrorStatus(404)
    if request.method == "POST":
        return ErrorStatus(405)

    size = st.st_size
    mtime = int(st.st_mtime)
    last_modified = http_date(mtime)
    etag = f'"{mtime:x}-{size:x}"' if settings.etag else None

    # ngx_http_not_modified_filter
    status = _precondition(request, mtime, etag, settings.if_modified_since)
    if status == 412:
        return ErrorStatus(412)
    if status == 304:
        headers = [("Last-Modified", last_modified)]
        if etag is not None:
            headers.append(("ETag", etag))
        return BytesResponse(304, headers, b"")

    ctype = content_type(uri, settings.types, settings.default_type)
    headers = [("Content-Type", ctype), ("Content-Length", str(size)),
               ("Last-Modified", last_modified)]
    if etag is not None:
        headers.append(("ETag", etag))
    if suffix:
        headers.append(("Content-Encoding", "gzip"))

    # ngx_http_range_filter
    most = settings.max_ranges
    if most == 0:       # max_ranges 0: neither ranges nor Accept-Ranges
        return FileResponse(200, headers, path, 0, size)
    ranges = _ranges_for(request, size, mtime, etag) if ranges else None
    if ranges is not None and most is not None and ranges != "unsatisfiable" \
            and len(ranges) > most:
        ranges = None   # more ranges than max_ranges: the whole file (NGX_DECLINED)
    if ranges is None:
        headers.append(("Accept-Ranges", "bytes"))
        return FileResponse(200, headers, path, 0, size)
    if ranges == "unsatisfiable":
        return ErrorStatus(416, [("Content-Range", f"bytes */{size}")])
    if len(ranges) == 1:
        start, end = ranges[0]
        headers[1] = ("Content-Length", str(end - start))
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        return FileResponse(206, headers, path, start, end - start)
    return _multipart(request, path, headers, ctype, ranges, size)


def _directory_location(request, uri: str) -> str:
    """The absolute Location nginx sends for a directory URI without its slash."""
    target = _escape_uri(uri) + "/"
    if request.args:
        target += "?" + request.args
    # absolute_redirect on: the Host header's name, else the local address.
    host = request.host or request.server_addr
    port = request.server_port
    scheme = request.scheme or "http"
    if port == (443 if scheme == "https" else 80):
        return f"{scheme}://{host}{target}"
    return f"{scheme}://{host}:{port}{target}"


# Bytes nginx escapes in a Location it builds (NGX_ESCAPE_URI): controls, space,
# '"', '#', '%', '<', '>', '?', '\\', '^', '`', '{', '|', '}', DEL and non-ASCII.
_URI_UNSAFE = frozenset(b' "#%<>?\\^`{|}\x7f') | frozenset(range(0x20)) \
    | frozenset(range(0x80, 0x100))


def _escape_uri(uri: str) -> str:
    """Percent-encode the bytes of ``uri`` that nginx escapes in redirects."""
    raw = os.fsencode(uri)
    if not any(b in _URI_UNSAFE for b in raw):
        return uri
    return "".join(f"%{b:02X}" if b in _URI_UNSAFE else chr(b) for b in raw)


# Conditional requests ---------------------------------------------------------

def _precondition(request, mtime: int, etag: str | None, mode: str = "exact") -> int:
    """412, 304 or 200 for the If-* headers (``ngx_http_not_modified_filter``)."""
    value = request.header("if-unmodified-since")
    if value is not None:
        since = parse_http_date(value)
        if since is None or since < mtime:
            return 412
    value = request.header("if-match")
    if value is not None and not _etag_matches(value, etag, weak=False):
        return 412
    modified_since = request.header("if-modified-since")
    none_match = request.header("if-none-match")
    if modified_since is None and none_match is None:
        return 200
    # ngx_http_test_if_modified: "exact", only the very same date means not modified;
    # "before", a date at or after the file's too; "off", never.
    if modified_since is not None:
        since = parse_http_date(modified_since)
        if mode == "off" or (since != mtime and (mode == "exact" or since is None
                                                  or since < mtime)):
            return 200
    if none_match is not None and not _etag_matches(none_match, etag, weak=True):
        return 200
    return 304


def _etag_matches(value: str, etag: str | None, weak: bool) -> bool:
    """Whether a comma-separated If-Match/If-None-Match list names ``etag``."""
    if value == "*":
        return True
    if etag is None:
        return False
    for candidate in value.split(","):
        candidate = candidate.strip(" \t")
        if weak:
            # If-None-Match uses the weak comparison (RFC 9110 13.1.2).
            if candidate.startswith("W/"):
                candidate = candidate[2:]
            if etag.startswith("W/"):
                etag = etag[2:]
        if candidate == etag:
            return True
    return False


# Ranges -----------------------------------------------------------------------

def _ranges_for(request, size: int, mtime: int, etag: str | None):
    """None (send it all), "unsatisfiable", or a list of (start, end) byte ranges."""
    value = request.header("range")
    if value is None or len(value) < 7 or value[:6].lower() != "bytes=":
        return None
    if_range = request.header("if-range")
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith('"'):
            if if_range != etag:
                return None
        elif parse_http_date(if_range) != mtime:
            return None
    return parse_ranges(value[6:], size)


def parse_ranges(spec: str, size: int):
    """Parse the part after "bytes=" as nginx does (``ngx_http_range_parse``).

    Returns None when the header is to be ignored (whole file), "unsatisfiable",
    or the list of half-open (start, end) ranges.
    """
    ranges = []
    total = 0
    for part in spec.split(","):
        part = part.strip(" ")
        first, dash, second = part.partition("-")
        first = first.rstrip(" ")
        if first:
            second = second.lstrip(" ")   # nginx allows "5- 9" but not "- 9"
        if not dash or not _digits(first, allow_empty=True) or \
                not _digits(second, allow_empty=bool(first)):
            return "unsatisfiable"
        if not first:                       # "-N": the last N bytes
            suffix = int(second)
            start = size - suffix if suffix < size else 0
            end = size
        else:
            start = int(first)
            end = min(int(second) + 1, size) if second else size
        if start < end:
            ranges.append((start, end))
            total += end - start
        elif start == 0:
            # e.g. any range of an empty file: nginx sends the (empty) whole.
            return None
    if not ranges:
        return "unsatisfiable"
    if total > size:
        return None
    return ranges


_MAX_OFF_T = (1 << 63) - 1


def _digits(text: str, allow_empty: bool) -> bool:
    """Whether ``text`` is a decimal number nginx accepts (fits off_t)."""
    if not text:
        return allow_empty
    return text.isascii() and text.isdigit() and int(text) <= _MAX_OFF_T


# nginx numbers boundaries 1, 2, ... per worker, printed as 20 digits.
_boundaries = itertools.count(1)


def _multipart(request, path, headers, ctype, ranges, size):
    """A multipart/byteranges answer, laid out as nginx's range filter does."""
    total = sum(end - start for start, end in ranges)
    boundary = f"{next(_boundaries):020d}"
    if total > _MULTIPART_LIMIT:
        from gateway.http.ranges import multipart
        return multipart(headers, path, ranges, size, ctype, boundary)
    lead = f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes ".encode("latin-1")
    pieces = []
    try:
        with open(path, "rb") as file:
            for start, end in ranges:
                file.seek(start)
                data = file.read(end - start)
                pieces.append(lead + f"{start}-{end - 1}/{size}\r\n\r\n".encode() + data)
    except OSError:
        return ErrorStatus(500)
    pieces.append(f"\r\n--{boundary}--\r\n".encode())
    body = b"".join(pieces)
    headers[0] = ("Content-Type", f"multipart/byteranges; boundary={boundary}")
    headers[1] = ("Content-Length", str(len(body)))
    return BytesResponse(206, headers, b"" if request.method == "HEAD" else body)


# HTTP dates -------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# Files' mtimes repeat from request to request, and so do the dates clients
# send back: both conversions are cached (bounded, cleared when full).
_formatted: dict[int, str] = {}
_parsed: dict[str, int | None] = {}
_CACHE_SIZE = 4096


def http_date(seconds: int) -> str:
    """``seconds`` since the epoch as an RFC 1123 date ("Sun, 06 Nov 1994 08:49:37 GMT")."""
    text = _formatted.get(seconds)
    if text is None:
        if len(_formatted) >= _CACHE_SIZE:
            _formatted.clear()
        text = _formatted[seconds] = _format_date(seconds)
    return text


def _format_date(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    year, month, day = _civil(days)
    return (f"{_DAYS[(days + 3) % 7]}, {day:02d} {_MONTHS[month - 1]} {year:04d} "
            f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d} GMT")


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (proleptic Gregorian)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch of an HTTP date, or None; as lenient as ``ngx_parse_http_time``."""
    try:
        return _parsed[text]
    except KeyError:
        pass
    if len(_parsed) >= _CACHE_SIZE:
        _parsed.clear()
    value = _parsed[text] = _parse_date(text)
    return value


def _parse_date(text: str) -> int | None:
    """The parser behind ``parse_http_date``.

    Accepts "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT"
    and "Sun Nov  6 08:49:37 1994"; the weekday and anything after the time
    (or year) are not checked, like nginx.
    """
    # Sentinel NULs stand for nginx reading past the end into the C string's end.
    s = text + "\x00" * 8
    end = len(text)
    comma, space = text.find(","), text.find(" ")
    asctime = space >= 0 and (comma < 0 or space < comma)
    p = (space if asctime else comma if comma >= 0 else end) + 1
    while p < end and s[p] == " ":
        p += 1
    if end - p < 18:
        return None

    if asctime:
        fmt = "asctime"
    else:
        day = _two(s, p)
        if day is None:
            return None
        p += 2
        if s[p] == " ":
            if end - p < 18:
                return None
            fmt = "rfc1123"
        elif s[p] == "-":
            fmt = "rfc850"
        else:
            return None
        p += 1

    month = _month(s, p)
    if month is None:
        return None
    p += 3
    if (fmt == "rfc1123" and s[p] != " ") or (fmt == "rfc850" and s[p] != "-"):
        return None
    p += 1

    if fmt == "rfc1123":
        year = _four(s, p)
        if year is None:
            return None
        p += 4
    elif fmt == "rfc850":
        year = _two(s, p)
        if year is None:
            return None
        year += 2000 if year < 70 else 1900
        p += 2
    else:
        if s[p] == " ":
            p += 1
        if not "0" <= s[p] <= "9":
            return None
        day = ord(s[p]) - 48
        p += 1
        if s[p] != " ":
            if not "0" <= s[p] <= "9":
                return None
            day = day * 10 + ord(s[p]) - 48
            p += 1
        if end - p < 14:
            return None

    if s[p] != " ":
        return None
    p += 1
    hour = _two(s, p)
    if hour is None or s[p + 2] != ":":
        return None
    minute = _two(s, p + 3)
    if minute is None or s[p + 5] != ":":
        return None
    second = _two(s, p + 6)
    if second is None:
        return None
    if fmt == "asctime":
        if s[p + 8] != " ":
            return None
        year = _four(s, p + 9)
        if year is None:
            return None

    if hour > 23 or minute > 59 or second > 59:
        return None
    if day == 29 and month == 2:
        if year % 4 or (year % 100 == 0 and year % 400):
            return None
    elif day > _MONTH_DAYS[month - 1]:
        return None
    return _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


def _two(s: str, p: int) -> int | None:
    a, b = s[p], s[p + 1]
    if "0" <= a <= "9" and "0" <= b <= "9":
        return (ord(a) - 48) * 10 + ord(b) - 48
    return None


def _four(s: str, p: int) -> int | None:
    high, low = _two(s, p), _two(s, p + 2)
    if high is None or low is None:
        return None
    return high * 100 + low


def _month(s: str, p: int) -> int | None:
    """The month number from nginx's loose look at the name's letters."""
    first = s[p]
    if first == "J":
        return 1 if s[p + 1] == "a" else 6 if s[p + 2] == "n" else 7
    if first == "M":
        return 3 if s[p + 2] == "r" else 5
    if first == "A":
        return 4 if s[p + 1] == "p" else 8
    return {"F": 2, "S": 9, "O": 10, "N": 11, "D": 12}.get(first)


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the date (day 0 means the last day of the month before)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
