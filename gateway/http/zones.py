"""Shared-memory zones of limit_req_zone and limit_conn_zone, counted across worker processes.

Each zone is a fixed-size hash table in an anonymous shared mapping, made by the master while it
builds the configuration (before any fork), so every worker reads and writes the same counts.
The table is set-associative: a key's CRC32 picks a bucket of WAYS entries; a bucket starts with
its WAYS tags (CRC32 + 1, 0 for a free entry) so one read finds the candidate. Where nginx's slab
allocator runs out and expires its least recently used node, a full bucket gives up its least
recently used entry that no request holds (an approximation of nginx's LRU queue); where nginx
finds nothing to expire it logs "could not allocate node", and so do we.

One process-shared lock per zone (a POSIX semaphore created before fork: 0.2 us a pair, against
2 us for fcntl record locks), held for a few table reads and writes. A worker killed while
holding it cannot release it: a waiter that waits more than LOCK_TIMEOUT takes the zone over,
as nginx's master forces the lock of a worker that died.
"""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing
import struct
import time
import zlib

from gateway.observe.errorlog import log

WAYS = 8
KEY_MAX = 64            # longer keys are stored as their BLAKE2b digest
LOCK_TIMEOUT = 1.0
_TAGS = struct.Struct(f"<{WAYS}I")
_TAG = struct.Struct("<I")
# Every entry starts with its key (length, bytes); its numbers follow at NUMBERS.
_KEY = struct.Struct(f"<I{KEY_MAX}s")
NUMBERS = 72
# limit_req: requests holding the entry, excess (milli-requests), last drained, last used (ms).
_REQ = struct.Struct("<i4xqqq")
# limit_conn: requests in progress, last used (ms).
_CONN = struct.Struct("<i4xq")
_COUNT = struct.Struct("<i")
# nginx's slab size of one node (rbtree node + the module's node + a short key) on 64 bits.
NGINX_REQ_NODE = 128
NGINX_CONN_NODE = 64

# Results of LimitReqZone.lookup, as ngx_http_limit_req_lookup's.
OK, AGAIN, BUSY, ERROR = "ok", "again", "busy", "error"

_registry: dict = {}


def now_ms() -> int:
    """nginx's ngx_current_msec: a monotonic clock every worker shares."""
    return int(time.monotonic() * 1000)


def _probe(key: bytes) -> bytes:
    """An entry's key as stored: its length, then the key (or its digest when long)."""
    if len(key) <= KEY_MAX:
        return _TAG.pack(len(key)) + key
    return _TAG.pack(0xFFFFFFFF) + hashlib.blake2b(key, digest_size=KEY_MAX).digest()


class _Table:
    """WAYS-way buckets of fixed-size entries in a shared mapping, with one lock."""

    numbers: struct.Struct

    def __init__(self, name: str, size: int, node_size: int):
        self.name = name
        self.size = size
        capacity = max(WAYS, size // node_size)
        self.buckets = capacity // WAYS
        self.entry_size = NUMBERS + self.numbers.size
        self.bucket_size = _TAGS.size + WAYS * self.entry_size
        self.memory = mmap.mmap(-1, self.buckets * self.bucket_size)
        self.lock = multiprocessing.Lock()

    def acquire(self) -> None:
        if not self.lock.acquire(True, LOCK_TIMEOUT):
            self._taken_over()

    def _taken_over(self) -> None:
        # Its holder died (a worker killed while it held it): the release that follows frees it.
        log.alert(f'the lock of zone "{self.name}" was held for {LOCK_TIMEOUT:g}s, taking it over')

    def release(self) -> None:
        self.lock.release()

    def _find(self, key: bytes):
        """(bucket offset, tags, entry offset or -1, tag, stored key); under the lock."""
        h = zlib.crc32(key)
        base = (h % self.buckets) * self.bucket_size
        tag = h + 1 if h != 0xFFFFFFFF else 1
        memory = self.memory
        tags = _TAGS.unpack_from(memory, base)
        probe = _probe(key)
        if tag in tags:
            for way, t in enumerate(tags):
                if t == tag:
                    offset = base + _TAGS.size + way * self.entry_size
                    if memory[offset:offset + len(probe)] == probe:
                        return base, tags, offset, tag, probe
        return base, tags, -1, tag, probe

    def _claim(self, base: int, way: int, tag: int, probe: bytes) -> int:
        """Give a way to a new key; its entry's offset."""
        _TAG.pack_into(self.memory, base + 4 * way, tag)
        offset = base + _TAGS.size + way * self.entry_size
        self.memory[offset:offset + len(probe)] = probe
        return offset

    def _victim(self, base: int, tags) -> int:
        """A free way, else the least recently used one no request holds; -1 if all are held."""
        if 0 in tags:
            return tags.index(0)
        best, oldest = -1, None
        numbers = self.numbers
        for way in range(WAYS):
            fields = numbers.unpack_from(self.memory, base + _TAGS.size + way * self.entry_size + NUMBERS)
            if fields[0] == 0 and (oldest is None or fields[-1] < oldest):
                best, oldest = way, fields[-1]
        return best


class LimitReqZone(_Table):
    """limit_req_zone: per key, the leaky bucket's excess and when it was last drained."""

    numbers = _REQ

    def __init__(self, name, key, size, rate):
        super().__init__(name, size, NGINX_REQ_NODE)
        self.key = key
        self.rate = rate          # milli-requests per second

    def lookup(self, key: bytes, burst: int, account: bool, now: int):
        """ngx_http_limit_req_lookup: (result, excess, entry offset held or None)."""
        memory = self.memory
        if not self.lock.acquire(True, LOCK_TIMEOUT):
            self._taken_over()
        try:
            base, tags, offset, tag, probe = self._find(key)
            if offset >= 0:
                count, kept, last, _ = _REQ.unpack_from(memory, offset + NUMBERS)
                ms = now - last
                if ms < -60000:
                    ms = 1
                elif ms < 0:
                    ms = 0
                excess = kept - self.rate * ms // 1000 + 1000
                if excess < 0:
                    excess = 0
                if excess > burst:
                    _REQ.pack_into(memory, offset + NUMBERS, count, kept, last, now)   # only used
                    return BUSY, excess, None
                if account:
                    _REQ.pack_into(memory, offset + NUMBERS, count, excess, now if ms else last, now)
                    return OK, excess, None
                _COUNT.pack_into(memory, offset + NUMBERS, count + 1)
                return AGAIN, excess, offset
            way = self._victim(base, tags)
            if way < 0:
                log.alert(f'could not allocate node in limit_req zone "{self.name}"')
                return ERROR, 0, None
            offset = self._claim(base, way, tag, probe)
            if account:
                _REQ.pack_into(memory, offset + NUMBERS, 0, 0, now, now)
                return OK, 0, None
            _REQ.pack_into(memory, offset + NUMBERS, 1, 0, 0, now)
            return AGAIN, 0, offset
        finally:
            self.lock.release()

    def account(self, offset: int, now: int) -> int:
        """ngx_http_limit_req_account for a held entry: drain, add this request; its excess."""
        self.acquire()
        try:
            count, excess, last, _ = _REQ.unpack_from(self.memory, offset + NUMBERS)
            if last == 0:
                excess, ms = 0, 1       # new, "last" unset: nginx drains it from time 0
            else:
                ms = _elapsed(now, last)
                excess = max(excess - self.rate * ms // 1000 + 1000, 0)
            _REQ.pack_into(self.memory, offset + NUMBERS, count - 1, excess, now if ms else last, now)
            return excess
        finally:
            self.release()

    def unhold(self, offset: int) -> None:
        """ngx_http_limit_req_unlock: a held entry is let go without accounting."""
        self.acquire()
        try:
            at = offset + NUMBERS
            _COUNT.pack_into(self.memory, at, _COUNT.unpack_from(self.memory, at)[0] - 1)
        finally:
            self.release()


def _elapsed(now: int, last: int) -> int:
    ms = now - last
    if ms < -60000:
        return 1
    return ms if ms > 0 else 0


class LimitConnZone(_Table):
    """limit_conn_zone: per key, how many requests are being processed."""

    numbers = _CONN

    def __init__(self, name, key, size):
        super().__init__(name, size, NGINX_CONN_NODE)
        self.key = key

    def take(self, key: bytes, limit: int, now: int):
        """Count one more for ``key``: its entry's offset, "busy" over the limit, None if full."""
        self.acquire()
        try:
            base, tags, offset, tag, probe = self._find(key)
            if offset >= 0:
                count = _COUNT.unpack_from(self.memory, offset + NUMBERS)[0]
                if count >= limit:
                    return BUSY
                _CONN.pack_into(self.memory, offset + NUMBERS, count + 1, now)
                return offset
            if 0 not in tags:
                log.alert(f'could not allocate node in limit_conn_zone "{self.name}"')
                return None
            offset = self._claim(base, tags.index(0), tag, probe)
            _CONN.pack_into(self.memory, offset + NUMBERS, 1, now)
            return offset
        finally:
            self.release()

    def give_back(self, offset: int) -> None:
        """A request counted at ``offset`` ended; the entry is freed at zero, as nginx's node."""
        self.acquire()
        try:
            at = offset + NUMBERS
            count = _COUNT.unpack_from(self.memory, at)[0] - 1
            if count <= 0:
                base = offset - offset % self.bucket_size
                _TAG.pack_into(self.memory, base + 4 * ((offset - base - _TAGS.size) // self.entry_size), 0)
                count = 0
            _COUNT.pack_into(self.memory, at, count)
        finally:
            self.release()

    def connections(self, key: bytes) -> int:
        """How many requests ``key`` has now (tests, diagnostics)."""
        self.acquire()
        try:
            offset = self._find(key)[2]
            return _COUNT.unpack_from(self.memory, offset + NUMBERS)[0] if offset >= 0 else 0
        finally:
            self.release()


def zone(kind: str, name: str, key: str, size: int, rate: int = 0):
    """The zone for a configuration (the master's, before fork): one kept across reloads when
    its name, key, size and rate are unchanged, as nginx keeps a shared zone."""
    ident = (kind, name, key, size, rate)
    found = _registry.get(ident)
    if found is None:
        found = LimitReqZone(name, key, size, rate) if kind == "limit_req" \
            else LimitConnZone(name, key, size)
        _registry[ident] = found
    return found
