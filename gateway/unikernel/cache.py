"""The response cache kept in a kv pool (`unikernel_cache`): what a shared cache may store, for how
long, how an entry is laid out in a kv value, and one upstream fetch per key at a time.

Storage rules are RFC 9111's for a shared cache (section 3): no `no-store`, `private` or `no-cache`,
no `Set-Cookie` (as nginx), no `Vary: *`; a request with `Authorization` only when the response says
`public`, `s-maxage` or `must-revalidate` (3.5). The lifetime is `s-maxage`, else `max-age`, else
`Expires` minus `Date`, else the configured `ttl` (nginx's proxy_cache_valid), for the statuses a cache
may store without explicit freshness (RFC 9110 15.1); the kv guest expires the entry itself.
Only responses of known length up to `max_size` are stored; chunked ones pass through uncached.
"""

from __future__ import annotations

import email.utils
import struct
import time

# RFC 9110 15.1 "heuristically cacheable" statuses, less 206 (we do not store ranges).
CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# magic, status, stored at (unix seconds), Vary block length, head length; then Vary, head, body.
ENTRY = struct.Struct("<4sHIHI")
MAGIC = b"GWC1"


def _directives(value: bytes) -> dict[bytes, bytes]:
    """Cache-Control's directives, lowercased: {b"max-age": b"60", b"public": b""}."""
    out = {}
    for item in value.split(b","):
        name, _, arg = item.strip().partition(b"=")
        if name:
            out[name.lower()] = arg.strip().strip(b'"')
    return out


def _seconds(text: bytes) -> int | None:
    return int(text) if text.isdigit() else None


def lifetime(status: int, headers, request, default_ttl: float) -> int:
    """Seconds a shared cache may serve this response; 0 when it must not store it."""
    if status not in CACHEABLE:
        return 0
    control = {}
    expires = date = None
    vary = b""
    for lower, _name, value in headers:
        if lower == b"cache-control":
            control.update(_directives(value))
        elif lower == b"set-cookie":
            return 0
        elif lower == b"expires":
            expires = value
        elif lower == b"date":
            date = value
        elif lower == b"vary":
            vary += b"," + value
    if b"no-store" in control or b"private" in control or b"no-cache" in control:
        return 0
    if any(v.strip() == b"*" for v in vary.split(b",")):
        return 0
    if request.header("authorization") is not None and not (
            b"public" in control or b"s-maxage" in control or b"must-revalidate" in control):
        return 0
    for name in (b"s-maxage", b"max-age"):
        if name in control:
            seconds = _seconds(control[name])
            return seconds if seconds is not None else 0
    if expires is not None:
        # An invalid Expires means "already expired" (RFC 9111 5.3).
        when = _http_date(expires)
        base = _http_date(date) if date is not None else None
        if when is None:
            return 0
        return max(0, int(when - (base if base is not None else time.time())))
    return max(1, int(default_ttl))


def _http_date(value: bytes) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed is not None else None


def vary_names(headers) -> list[str]:
    """The request fields a response varies on, lowercased, in order."""
    names = []
    for lower, _name, value in headers:
        if lower == b"vary":
            for item in value.split(b","):
                item = item.strip().lower().decode("latin-1")
                if item and item not in names:
                    names.append(item)
    return names


def vary_block(names, request) -> bytes:
    """The request's values of the Vary fields, as stored beside the entry and compared on a hit."""
    return b"\n".join(b"%s:%s" % (n.encode("latin-1"), (request.header(n) or "").encode("latin-1", "replace"))
                      for n in names)


def encode(status: int, vary: bytes, head: bytes, body: bytes, now: float | None = None) -> bytes:
    """One kv value holding a response: its header lines as relayed, and its body."""
    stored = int(time.time() if now is None else now)
    return ENTRY.pack(MAGIC, status, stored, len(vary), len(head)) + vary + head + body


class Entry:
    """A stored response read back from kv."""

    __slots__ = ("status", "stored_at", "vary", "head", "body")

    def __init__(self, status, stored_at, vary, head, body):
        self.status = status
        self.stored_at = stored_at
        self.vary = vary
        self.head = head
        self.body = body

    def matches(self, request) -> bool:
        """Whether the request asks for this variant (its Vary fields have the stored values)."""
        if not self.vary:
            return True
        names = [line.split(b":", 1)[0].decode("latin-1") for line in self.vary.split(b"\n")]
        return vary_block(names, request) == self.vary

    def age(self, now: float | None = None) -> int:
        return max(0, int((time.time() if now is None else now) - self.stored_at))


def decode(value: bytes) -> Entry | None:
    """An Entry, or None for a value that is not one (then the lookup counts as a miss)."""
    if len(value) < ENTRY.size:
        return None
    magic, status, stored, vary_len, head_len = ENTRY.unpack_from(value)
    start = ENTRY.size
    if magic != MAGIC or start + vary_len + head_len > len(value):
        return None
    vary = value[start:start + vary_len]
    head = value[start + vary_len:start + vary_len + head_len]
    return Entry(status, stored, vary, head, value[start + vary_len + head_len:])


class Fill:
    """One upstream fetch for a key that missed: later misses for the key wait for it (nginx's
    proxy_cache_lock), then are answered from what it stored, or go upstream themselves."""

    __slots__ = ("key", "table", "waiters", "status", "ttl", "vary", "head", "parts", "size", "limit",
                 "length")

    def __init__(self, key, table, limit):
        self.key = key
        self.table = table
        self.waiters = []
        self.limit = limit
        self.ttl = 0
        self.status = 0
        self.vary = b""
        self.head = b""
        self.parts = []
        self.size = 0
        self.length = -1
        table[key] = self

    def begin(self, status, headers, request, framing, length, default_ttl):
        """The upstream's response head: decide whether to keep what follows."""
        self.parts = []
        self.size = 0
        self.ttl = 0
        if request.method != "GET" or framing not in ("length", "none"):
            return
        if framing == "length" and length > self.limit:
            return
        self.ttl = lifetime(status, headers, request, default_ttl)
        if not self.ttl:
            return
        self.status = status
        self.length = length if framing == "length" else 0
        self.vary = vary_block(vary_names(headers), request)
        self.head = b"".join(b"%s: %s\r\n" % (name, value) for lower, name, value in headers
                             if lower not in _NOT_STORED)

    def add(self, data):
        if self.ttl:
            self.size += len(data)
            self.parts.append(data)

    def finish(self):
        """The response is complete: (entry value, ttl) to store, or None; waiters are answered."""
        table = self.table
        if table.get(self.key) is self:
            del table[self.key]
        stored = None
        if self.ttl and self.size == self.length:
            body = b"".join(self.parts)
            value = encode(self.status, self.vary, self.head, body)
            if len(value) <= self.limit + 4096:
                stored = value
        self.parts = []
        waiters, self.waiters = self.waiters, []
        entry = decode(stored) if stored is not None else None
        for waiter in waiters:
            waiter.fill_done(entry)
        return (stored, self.ttl) if stored is not None else None

    def abandon(self):
        """No storable response came (error, client gone): the waiters go upstream."""
        self.ttl = 0
        self.finish()


# Fields that describe one transfer, not the stored response.
_NOT_STORED = frozenset({
    b"date", b"server", b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection",
    b"upgrade", b"trailer", b"age", b"x-cache",
})
