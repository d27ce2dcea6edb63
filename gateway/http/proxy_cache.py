"""The proxy cache (nginx's ngx_http_file_cache with the upstream module's cache rules).

Entries are files under the proxy_cache_path, named by the md5 of the key in nginx's
``levels`` layout (``levels=1:2``: ``c/29/b7f5...29c``). Each file holds a small header of
ours (expiry, date, the key, the Vary fields and the variant hash), then the upstream's
response head and its body exactly as they arrived, so that a hit replays them through the
same relay as a fresh response (hidden fields, proxy_redirect, our Date and Server; nginx adds
no Age either). A file is written under ``PATH/.temp`` while the body streams to the client
and renamed into place once the body is whole, so a worker never sees half an entry; every
worker reads the same files. Per worker there are only the min_uses counts and the keys being
updated (nginx keeps both in its shared zone).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import re
import threading
import time

from gateway.errors import HttpError, UpstreamError
from gateway.http import parser
from gateway.http.gzip import GzipProxyExchange
from gateway.http.headers import NEVER_PASSED
from gateway.http.proxy import DONE, RELAYING, WAITING, ProxyExchange
from gateway.http.variables import UPSTREAM_CACHE_STATUS, compile_template
from gateway.observe.errorlog import log

MAGIC = b"GWCACHE1"
# nginx refuses a Vary longer than this (NGX_HTTP_CACHE_VARY_LEN).
VARY_LIMIT = 128
# The longest stored head read back (heads are bounded by proxy.MAX_RESPONSE_HEAD).
HEAD_READ = 80 * 1024
CHUNK = 64 * 1024
# The client's conditions and ranges are not sent upstream from a cached location, so that a
# whole response comes back to be stored (nginx's ngx_http_proxy_cache_headers; a
# proxy_set_header of one of them still applies).
CACHE_DROPPED = frozenset({b"if-modified-since", b"if-unmodified-since", b"if-none-match",
                           b"if-match", b"range", b"if-range"})
# proxy_cache_min_uses counts kept per worker and cache before they start again.
USES_LIMIT = 100_000
# How often one worker walks a cache for inactive entries and max_size.
SWEEP_EVERY = 10.0
# Statuses proxy_cache_use_stale names, as nginx's next_upstream masks.
STALE_STATUS = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504",
                403: "http_403", 404: "http_404", 429: "http_429"}
# Where a max-age value ends (nginx reads digits up to one of these).
_DELIMITED = re.compile(rb"[,; ]")
_temp_names = itertools.count(1)
_zones: dict[str, "CacheZone"] = {}


def zone_for(cache) -> "CacheZone":
    """The worker's runtime for one proxy_cache_path (one per path)."""
    zone = _zones.get(cache.path)
    if zone is None:
        zone = _zones[cache.path] = CacheZone(cache)
    return zone


class CacheZone:
    """One proxy_cache_path in this worker: file names, min_uses counts, keys in update."""

    def __init__(self, cache):
        self.path = cache.path
        self.levels = cache.levels
        self.inactive = cache.inactive
        self.max_size = cache.max_size
        self.temp = os.path.join(self.path, ".temp")
        self.uses: dict[str, int] = {}
        self.updating: set[str] = set()
        self.next_sweep = 0.0
        self.sweeping = False
        try:
            os.makedirs(self.temp, exist_ok=True)
        except OSError as exc:
            log.error(f'mkdir() "{self.temp}" failed ({exc})')

    def count_use(self, hexkey: str) -> int:
        """One more request for a key not stored yet; how many so far."""
        uses = self.uses
        if len(uses) >= USES_LIMIT:
            uses.clear()        # bounded, as nginx's keys zone is: the counts start again
        count = uses[hexkey] = uses.get(hexkey, 0) + 1
        return count

    def file_name(self, hexkey: str) -> str:
        """nginx's layout: each level is taken from the end of the name."""
        parts, end = [], len(hexkey)
        for width in self.levels:
            parts.append(hexkey[end - width:end])
            end -= width
        return os.path.join(self.path, *parts, hexkey)

    def temp_name(self) -> str:
        return os.path.join(self.temp, f"{os.getpid()}.{next(_temp_names)}")

    def tick(self, now: float) -> None:
        """Start the periodic sweep (inactive, max_size) when due, in a thread of its own so
        that walking a large cache never stalls the event loop."""
        if now < self.next_sweep or self.sweeping:
            return
        self.next_sweep = now + SWEEP_EVERY
        self.sweeping = True
        threading.Thread(target=self.sweep_once, name="proxy_cache sweep", daemon=True).start()

    def sweep_once(self) -> None:
        """One sweep, unless another worker holds the lock or swept a moment ago."""
        try:
            with open(os.path.join(self.temp, "sweep.lock"), "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return      # another worker sweeps now
                lock.seek(0)
                last = lock.read().strip()
                wall = time.time()
                if last.replace(".", "", 1).isdigit() and wall - float(last) < SWEEP_EVERY / 2:
                    return      # another worker swept a moment ago
                lock.seek(0)
                lock.truncate()
                lock.write(f"{wall:.3f}\n")
                lock.flush()
                self._sweep(wall)
        except OSError as exc:
            log.error(f'cache sweep of "{self.path}" failed ({exc})')
        finally:
            self.sweeping = False

    def _sweep(self, wall: float) -> None:
        entries = []
        for folder, dirs, files in os.walk(self.path):
            if folder == self.path and ".temp" in dirs:
                dirs.remove(".temp")
            for name in files:
                full = os.path.join(folder, name)
                try:
                    info = os.stat(full)
                except OSError:
                    continue
                # An entry's mtime is its last use (hits touch it): nginx's inactive.
                if wall - info.st_mtime > self.inactive:
                    _unlink(full)
                else:
                    entries.append((info.st_mtime, info.st_size, full))
        try:
            for name in os.listdir(self.temp):      # writes that never finished
                full = os.path.join(self.temp, name)
                if name != "sweep.lock" and wall - os.stat(full).st_mtime > 3600:
                    _unlink(full)
        except OSError:
            pass
        if self.max_size:
            total = sum(size for _, size, _ in entries)
            for _, size, full in sorted(entries):       # least recently used first
                if total <= self.max_size:
                    break
                _unlink(full)
                total -= size


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class CachePlan:
    """A location's cache settings, compiled."""

    __slots__ = ("zone", "key", "valid", "methods", "bypass", "no_cache", "min_uses",
                 "use_stale", "convert_head", "scheme", "revalidate", "own_conditions")

    def __init__(self, settings, tls: bool):
        self.zone = zone_for(settings.proxy_cache)
        self.key = compile_template(settings.proxy_cache_key) \
            if settings.proxy_cache_key is not None else None
        self.scheme = "https://" if tls else "http://"
        self.valid = tuple(settings.proxy_cache_valid)
        self.methods = settings.proxy_cache_methods | {"GET", "HEAD"}
        self.bypass = [compile_template(t) for t in settings.proxy_cache_bypass]
        self.no_cache = [compile_template(t) for t in settings.proxy_no_cache]
        self.min_uses = settings.proxy_cache_min_uses
        use_stale = settings.proxy_cache_use_stale
        self.use_stale = frozenset() if "off" in use_stale else use_stale
        self.convert_head = settings.proxy_cache_convert_head
        self.revalidate = settings.proxy_cache_revalidate
        # proxy_set_header If-Modified-Since / If-None-Match replace the revalidation's.
        self.own_conditions = {name.lower() for name, _ in settings.proxy_set_headers} & {
            "if-modified-since", "if-none-match"}

    def valid_for(self, status: int) -> int:
        """proxy_cache_valid's time for a status (ngx_http_file_cache_valid), 0 for none."""
        for code, seconds in self.valid:
            if code == 0 or code == status:
                return int(seconds)
        return 0


def predicates(templates, request) -> bool:
    """ngx_http_test_predicates: True when any value is neither empty nor "0"."""
    for template in templates:
        value = template.render(request)
        if value and value != "0":
            return True
    return False


def freshness(headers, ignore, now: int):
    """What the upstream's fields say, in their order, as nginx 1.22's
    ngx_http_upstream_process_* read them: (cacheable, valid_sec, vary); valid_sec 0 when
    they say nothing (proxy_cache_valid decides)."""
    valid = 0
    accel = False           # an X-Accel-Expires came (even one ignored): Cache-Control yields
    vary = b""
    for lower, _, value in headers:
        if lower == b"set-cookie":
            if "set-cookie" not in ignore:
                return False, 0, b""
        elif lower == b"x-accel-expires":
            accel = True
            if "x-accel-expires" in ignore:
                continue
            text = value.strip()
            if text.startswith(b"@"):
                if text[1:].isdigit():
                    valid = int(text[1:])
            elif text.isdigit():
                if int(text) == 0:
                    return False, 0, b""
                valid = now + int(text)
        elif lower == b"cache-control" and "cache-control" not in ignore:
            if valid and accel:
                continue
            text = value.lower()
            if b"no-cache" in text or b"no-store" in text or b"private" in text:
                return False, 0, b""
            at, skip = text.find(b"s-maxage="), 9
            if at < 0:
                at, skip = text.find(b"max-age="), 8
            if at >= 0:
                digits = _DELIMITED.split(text[at + skip:], 1)[0]
                if not digits.isdigit() or int(digits) == 0:
                    return False, 0, b""
                valid = now + int(digits)
        elif lower == b"expires" and "expires" not in ignore:
            if valid:
                continue
            from gateway.http.static import parse_http_date
            when = parse_http_date(value.decode("latin-1"))
            if when is None or when < now:
                return False, 0, b""
            valid = when
        elif lower == b"vary" and "vary" not in ignore:
            vary = value        # nginx 1.22 keeps the last Vary line
            if len(vary) > VARY_LIMIT or vary == b"*":
                return False, 0, b""
    return True, valid, vary


def variant(main: bytes, vary: bytes, request) -> str:
    """ngx_http_file_cache_vary: md5 of the main key and the request's varied fields."""
    digest = hashlib.md5(main)
    for name in vary.lower().replace(b",", b" ").split():
        digest.update(name + b":")
        normalize = name in (b"accept-charset", b"accept-encoding", b"accept-language")
        values = []
        for lower, _, value in request.headers:
            if lower == name:
                values.extend(value.replace(b",", b" ").split() if normalize else (value,))
        digest.update(b",".join(values))
        digest.update(b"\r\n")
    return digest.hexdigest()


class Entry:
    """A cache file's header and stored head, read; ``file`` is left at the body."""

    __slots__ = ("valid_sec", "date", "body_start", "variant", "vary", "head", "file", "path")

    def __init__(self, path: str, key: bytes):
        self.path = path
        self.file = open(path, "rb")
        try:
            f = self.file
            first = f.readline(200).rstrip(b"\n")
            key_line = f.readline().rstrip(b"\n")
            vary_line = f.readline(VARY_LIMIT + 8).rstrip(b"\n")
            magic, valid, date, body_start, var = first.split(b" ")
            if magic != MAGIC or key_line != b"KEY: " + key or not vary_line.startswith(b"VARY: "):
                raise ValueError("not an entry for this key")
            self.valid_sec, self.date, self.body_start = int(valid), int(date), int(body_start)
            self.variant = var.decode()
            self.vary = vary_line[6:]
            size = self.body_start - f.tell()
            if not 0 < size <= HEAD_READ:
                raise ValueError("bad head length")
            self.head = f.read(size)     # the stored head; the body follows
        except (ValueError, OSError):
            self.file.close()
            raise

    def renew(self, valid_sec: int, date: int) -> None:
        """Write a new expiry and date into the entry's header, in place (nginx's
        ngx_http_file_cache_update_header)."""
        try:
            with open(self.path, "r+b") as f:
                f.seek(len(MAGIC) + 1)
                f.write(b"%020d %020d" % (valid_sec, date))
        except OSError as exc:
            log.crit(f'cache file "{self.path}" could not be updated ({exc})')

    def close(self):
        self.file.close()


def revalidation(head: bytes, own: set) -> bytes:
    """If-Modified-Since and If-None-Match for an expired 200 or 206 entry, from its
    Last-Modified and ETag ($upstream_cache_last_modified, $upstream_cache_etag)."""
    parsed = parser.parse_response_head(head, len(head) + 1)
    if parsed is None or parsed[1] not in (200, 206):
        return b""
    lines = []
    for lower, _, value in parsed[3]:
        if lower == b"last-modified" and "if-modified-since" not in own:
            from gateway.http.static import http_date, parse_http_date
            when = parse_http_date(value.decode("latin-1"))
            if when is not None:
                lines.append(b"If-Modified-Since: %s\r\n" % http_date(when).encode())
        elif lower == b"etag" and "if-none-match" not in own:
            lines.append(b"If-None-Match: %s\r\n" % value)
    return b"".join(lines)


class EntryWriter:
    """An entry being written: a temp file, renamed into place when the body is whole."""

    __slots__ = ("zone", "path", "temp", "file")

    def __init__(self, zone: CacheZone, path: str, header: bytes):
        self.zone = zone
        self.path = path
        self.temp = zone.temp_name()
        self.file = open(self.temp, "wb")
        self.file.write(header)

    def write(self, data: bytes) -> bool:
        try:
            self.file.write(data)
            return True
        except OSError as exc:
            log.crit(f'write() "{self.temp}" failed ({exc})')
            self.discard()
            return False

    def commit(self) -> None:
        try:
            self.file.close()
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            os.replace(self.temp, self.path)
        except OSError as exc:
            log.crit(f'rename() "{self.temp}" to "{self.path}" failed ({exc})')
            _unlink(self.temp)

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        _unlink(self.temp)


def entry_header(key: bytes, valid_sec: int, date: int, vary: bytes, var: str,
                 head: bytes) -> bytes:
    """Our header, then the stored head; body_start is fixed-width so it can name itself."""
    lines = b"KEY: %s\nVARY: %s\n" % (key, vary)
    size = len(MAGIC) + 1 + 20 + 1 + 20 + 1 + 10 + 1 + len(var) + 1
    body_start = size + len(lines) + len(head)
    first = b"%s %020d %020d %010d %s\n" % (MAGIC, valid_sec, date, body_start, var.encode())
    return first + lines + head


def rebuilt_head(status: int, headers) -> bytes:
    """The upstream's head as the relay will read it again (its reason phrase is not kept:
    ours is always sent)."""
    lines = [b"HTTP/1.1 %d X\r\n" % status]
    lines += [b"%s: %s\r\n" % (name, value) for _, name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


CACHE_SLOTS = ("cache", "cache_status", "main", "key", "hexkey", "entry", "store", "scarce",
               "head_only", "paused", "stale_condition", "secondary", "updating", "file_entry",
               "sinking", "conditions")


def cache_exchange(conn, request, plan, app):
    """The exchange for a location with proxy_cache (through gzip when it is on)."""
    if plan.gzip is None:
        return CacheExchange(conn, request, plan, app)
    return GzipCacheExchange(conn, request, plan, app)


class CachingMixin:
    """What a location with proxy_cache adds to an exchange: answered from the cache when it
    can, else from the upstream while the response is stored (for CacheExchange and
    GzipCacheExchange, which hold the state in their slots)."""

    __slots__ = ()

    def __init__(self, conn, request, plan, app):
        self.cache = cache = plan.proxy.cache
        self.cache_status = ""
        # nginx's proxy_cache_convert_head: a HEAD is fetched as a GET so that it can be stored.
        self.head_only = request.method == "HEAD" and cache.convert_head
        self.entry = self.store = self.file_entry = None
        self.scarce = self.paused = self.secondary = self.sinking = False
        self.conditions = b""       # proxy_cache_revalidate's fields for an expired entry
        self.stale_condition = ""
        self.updating = None
        self.main = self.key = b""
        self.hexkey = ""
        super().__init__(conn, request, plan, app)

    def _build_head(self) -> bytes:
        head = super()._build_head()
        if self.head_only and head.startswith(b"HEAD "):
            head = b"GET " + head[5:]
        return head + self.conditions

    def _set_status(self, status: str) -> None:
        self.cache_status = status
        request = self.request
        values = getattr(request, "vars", None)     # unset until a variable is stored
        if values is None:
            values = request.vars = {}
        values[UPSTREAM_CACHE_STATUS] = status

    # Looking up ---------------------------------------------------------------

    def start(self):
        cache = self.cache
        request = self.request
        if request.method not in cache.methods:
            super().start()
            return
        if cache.key is not None:
            key = cache.key.render(request)
        else:
            key = cache.scheme + self.proxy.proxy_host + self.proxy.upstream_uri(request)
        self.key = key.encode("utf-8", "surrogateescape")
        self.main = hashlib.md5(self.key).digest()
        self.hexkey = self.main.hex()
        if predicates(cache.bypass, request):
            self._set_status("BYPASS")
            super().start()
            return
        self._set_status("MISS")
        zone = cache.zone
        entry = self._open(self.hexkey)
        if entry is None:
            # nginx's NGX_HTTP_CACHE_SCARCE: not stored before proxy_cache_min_uses requests.
            self.scarce = cache.min_uses > 1 and zone.count_use(self.hexkey) < cache.min_uses
            super().start()
            return
        if entry.valid_sec >= int(time.time()):
            self._set_status("HIT")
            self._serve(entry)
            return
        if self.hexkey in zone.updating and "updating" in cache.use_stale:
            self._set_status("UPDATING")
            self._serve(entry)
            return
        self._set_status("EXPIRED")
        self.entry = entry          # kept for proxy_cache_use_stale and revalidation
        self.updating = self.hexkey
        zone.updating.add(self.hexkey)
        if cache.revalidate:
            self.conditions = revalidation(entry.head, cache.own_conditions)
            if self.conditions:
                self.head = self._build_head()
        super().start()

    def _open(self, hexkey: str):
        """The entry for ``hexkey`` (its variant for this request's Vary fields), or None."""
        path = self.cache.zone.file_name(hexkey)
        try:
            entry = Entry(path, self.key)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.crit(f'cache file "{path}" is invalid ({exc})')
            return None
        if entry.vary:
            wanted = variant(self.main, entry.vary, self.request)
            if wanted != entry.variant:
                entry.close()
                if self.secondary:
                    return None
                # nginx's ngx_http_file_cache_reopen: the variant hash is the next key.
                self.secondary = True
                self.hexkey = wanted
                return self._open(wanted)
        return entry

    # Answering from the cache -------------------------------------------------

    def _serve(self, entry: Entry) -> None:
        """Replay a stored response through the relay, as if the upstream sent it."""
        self.entry = None
        self.file_entry = entry
        self.head_only = False      # a HEAD answered from the cache: the head only, as always
        try:
            os.utime(entry.file.fileno())       # its last use, for the inactive sweep
        except OSError:
            pass
        parsed = parser.parse_response_head(entry.head, len(entry.head) + 1)
        if parsed is None:
            entry.close()
            self.conn.send_error(500, self.plan.add_headers)
            return
        version, status, _, headers, _ = parsed
        edits = self.proxy.response_filter
        if edits is not None and (edits.always or _has_redirect(headers)):
            self.raw_headers = headers
            headers, self.own_server, self.own_date = edits.apply(
                self.request, status, headers, self.app.absolute_url)
            self.hidden = NEVER_PASSED
        first = entry.file.read(CHUNK)
        self.state = WAITING
        try:
            self._respond(version, status, headers, first)
        except (HttpError, UpstreamError):
            entry.close()
            self.state = DONE
            self.conn.send_error(500, self.plan.add_headers)
            return
        self._pump()

    def _pump(self) -> None:
        entry = self.file_entry
        while entry is not None and self.state == RELAYING and not self.paused:
            data = entry.file.read(CHUNK)
            if not data:
                self.upstream_eof()
                break
            self._relay(data)
        if self.state == DONE and entry is not None:
            entry.close()

    def client_write_paused(self):
        if self.file_entry is not None:
            self.paused = True
            return
        super().client_write_paused()

    def client_write_resumed(self):
        if self.file_entry is not None:
            self.paused = False
            self.loop.call_soon(self._pump)
            return
        super().client_write_resumed()

    # Storing the upstream's response ------------------------------------------

    def _respond(self, version, status, headers, rest):
        if self.key and self.file_entry is None:
            self._maybe_store(status, self.raw_headers if self.raw_headers is not None
                              else headers)
            if self.store is not None and rest and not self.store.write(rest):
                self.store = None
        if not self.head_only:
            super()._respond(version, status, headers, rest)
            return
        # A HEAD fetched as a GET: the client gets the head any HEAD gets (gzip's too), the
        # body goes to the cache only; the exchange completes once it is read.
        kind, length = parser.response_body_framing(status, headers, "GET")
        self.sinking = True
        super()._respond(version, status, headers, b"")
        self.sinking = False
        self.framing = kind
        self.remaining = length
        self.reusable = kind != "close" and self.proxy.keepalive and version != 10
        self.state = RELAYING
        if kind == "chunked":
            self.decoder = parser.ChunkedDecoder()
        if kind == "none" or (kind == "length" and length == 0):
            self._complete()
        elif rest:
            self._relay(rest)

    def _maybe_store(self, status: int, headers) -> None:
        """Open the entry's file if nginx would cache this response."""
        cache = self.cache
        if self.cache_status in ("", "HIT", "STALE", "UPDATING") or self.scarce \
                or status < 200 or predicates(cache.no_cache, self.request):
            return
        now = int(time.time())
        cacheable, valid, vary = freshness(headers, self.plan.settings.proxy_ignore_headers, now)
        if not cacheable:
            return
        if not valid:
            seconds = cache.valid_for(status)
            if not seconds:
                return
            valid = now + seconds
        var = variant(self.main, vary, self.request) if vary else "-"
        hexkey = self.hexkey
        if self.secondary and var != hexkey:
            hexkey = self.main.hex()    # ngx_http_file_cache_update_variant: the main key
        header = entry_header(self.key, valid, now, vary, var, rebuilt_head(status, headers))
        try:
            self.store = EntryWriter(cache.zone, cache.zone.file_name(hexkey), header)
        except OSError as exc:
            log.crit(f'cache temp file in "{cache.zone.temp}" failed ({exc})')

    def upstream_data(self, data):
        store = self.store
        if store is not None and self.state == RELAYING and not store.write(data):
            self.store = None
        super().upstream_data(data)

    def _relay(self, data):
        if not self.head_only:
            super()._relay(data)
            return
        kind = self.framing
        if kind == "length":
            if self._length_part(data)[1]:
                self._complete()
        elif kind == "chunked":
            try:
                used, _ = self.decoder.feed(data, False)
            except HttpError:
                self._abort("upstream sent invalid chunked response")
                return
            if self.decoder.done:
                self._complete()

    # Outcomes -------------------------------------------------------------------

    def _complete(self):
        if self.sinking:
            return      # the head of a HEAD went out; the GET's body is still to be stored
        store, self.store = self.store, None
        if store is not None:
            store.commit()
            self.cache.zone.uses.pop(self.hexkey, None)
        self._done_updating()
        super()._complete()
        entry = self.file_entry
        if entry is not None:
            entry.close()

    def _abort(self, detail):
        self._drop()
        super()._abort(detail)

    def cancel(self):
        self._drop()
        super().cancel()

    def _drop(self):
        store, self.store = self.store, None
        if store is not None:
            store.discard()
        self._done_updating()
        for entry in (self.entry, self.file_entry):
            if entry is not None:
                entry.close()
        self.entry = None

    def _done_updating(self):
        if self.updating is not None:
            self.cache.zone.updating.discard(self.updating)
            self.updating = None

    # proxy_cache_use_stale --------------------------------------------------------

    def _fail(self, condition, status, detail):
        self.stale_condition = condition
        super()._fail(condition, status, detail)

    def _give_up(self, status, detail):
        # proxy_request_timeout's 504 is a timeout; "no live upstreams" counts as an error.
        condition = self.stale_condition or ("timeout" if status == 504 else "error")
        if self.entry is not None and condition in self.cache.use_stale:
            self._serve_stale()
            return
        self._drop()
        super()._give_up(status, detail)

    def _start_response(self, version, status, headers, rest):
        if status == 304 and self.entry is not None and self.cache.revalidate:
            self._revalidated(headers)
            return
        condition = STALE_STATUS.get(status)
        if self.entry is not None and condition in self.cache.use_stale and not (
                condition in self.proxy.next_upstream and self._may_retry(condition)):
            self.statuses.append(status)
            self.times.append(self.app.clock() - self.try_started)
            self._finish_upstream(failed=status >= 500, reuse=False)
            self._serve_stale()
            return
        if self.entry is not None:
            self.entry.close()
            self.entry = None
        super()._start_response(version, status, headers, rest)

    def _revalidated(self, headers):
        """The upstream's 304 to our conditions: the stored response answers, and lives on for
        what the 304 says, else proxy_cache_valid's time for 304 (nginx's
        ngx_http_upstream_test_next; without either the entry stays expired)."""
        self.statuses.append(304)
        self.times.append(self.app.clock() - self.try_started)
        self._finish_upstream(failed=False, reuse=False)
        entry, self.entry = self.entry, None
        self._done_updating()
        now = int(time.time())
        ignore = self.plan.settings.proxy_ignore_headers | {"set-cookie", "vary"}
        cacheable, valid, _ = freshness(headers, ignore, now)
        if not cacheable or not valid:
            seconds = self.cache.valid_for(304)
            valid = now + seconds if seconds else 0
        if valid:
            entry.renew(valid, now)
        self._set_status("REVALIDATED")
        self._serve(entry)

    def _serve_stale(self):
        entry, self.entry = self.entry, None
        self._done_updating()
        self._set_status("STALE")
        self._serve(entry)


def _has_redirect(headers) -> bool:
    from gateway.http.headers import has_redirect_field
    return has_redirect_field(headers)


class CacheExchange(CachingMixin, ProxyExchange):
    """A ProxyExchange with proxy_cache."""

    __slots__ = CACHE_SLOTS


class GzipCacheExchange(CachingMixin, GzipProxyExchange):
    """A GzipProxyExchange with proxy_cache: the upstream's bytes are stored, each answer
    (a hit too) is compressed on its way out, as nginx's gzip filter runs after the cache."""

    __slots__ = CACHE_SLOTS
