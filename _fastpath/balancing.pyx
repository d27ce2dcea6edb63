# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Round robin and least_conn per-request paths (select/release), compiled.

The specification is gateway/upstream/balancers/base.py (RoundRobin) and
least_conn.py (LeastConn) with gateway/upstream/peer.py (Peer); every class here
behaves exactly like its twin (tests/upstream/test_balancing_parity.py).
"""

import time

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from gateway.errors import ConfigError
from gateway.observe.errorlog import log
from gateway.upstream.peer import EWMA_ALPHA as _EWMA_ALPHA

cdef double EWMA_ALPHA = _EWMA_ALPHA
cdef object _monotonic = time.monotonic

cdef class Peer:
    """An upstream server (one resolved address) and its per-worker state (fields: .pxd)."""

    def __init__(self, server, Py_ssize_t index=0):
        self.index = index
        self.name = server.name
        self.host = server.host
        self.port = server.port
        self.weight = server.weight
        self.max_fails = server.max_fails
        self.fail_timeout = server.fail_timeout
        self.max_conns = server.max_conns
        self.backup = server.backup
        self.down = server.down
        self.conns = 0
        self.fails = 0
        self.accessed = 0.0
        self.checked = 0.0
        self.effective_weight = server.weight
        self.current_weight = 0
        self.healthy = True
        self.header_time = None
        self.response_time = None

    @property
    def address(self):
        """Where to connect: (host, port)."""
        return (self.host, self.port)

    def excluded(self, double now):
        """True when the peer may not take a request now (down, unhealthy, failed or full)."""
        return _excluded(self, now)

    def record_times(self, header_time, response_time):
        """Fold one successful request's latencies into the moving averages."""
        _record_times(self, header_time, response_time)

    def __repr__(self):
        return f"<Peer {self.name} {self.host}:{self.port} conns={self.conns} fails={self.fails}>"


cdef inline bint _excluded(Peer peer, double now):
    # nginx: a peer that reached max_fails is skipped while its fail_timeout
    # window (started at the last failure) lasts.
    return (peer.down or not peer.healthy
            or (peer.max_fails and peer.fails >= peer.max_fails
                and now - peer.checked <= peer.fail_timeout)
            or (peer.max_conns and peer.conns >= peer.max_conns))


cdef inline object _ewma(object old, object sample):
    if old is None:
        return sample
    cdef double last = old
    return last + EWMA_ALPHA * (<double>sample - last)


cdef inline void _record_times(Peer peer, object header_time, object response_time) except *:
    if header_time is not None:
        peer.header_time = _ewma(peer.header_time, header_time)
    if response_time is not None:
        peer.response_time = _ewma(peer.response_time, response_time)


@cython.final
@cython.freelist(32)
cdef class Selection:
    """Peers for one request in preference order (nginx's per-request peer data)."""

    def __dealloc__(self):
        if self.tried != NULL and self.tried != self.inline_tried:
            PyMem_Free(self.tried)

    def __iter__(self):
        return self

    def __next__(self):
        peer = self.next_peer()
        if peer is None:
            raise StopIteration
        return peer

    cdef Peer next_peer(self):
        """__next__ for C callers: the next peer, or None when there is none left."""
        if self.done:
            return None
        if self.yielded and self.balancer.single:
            # nginx spends every try on a single peer at its first failure.
            self.done = True
            return None
        peer = self.balancer._get(self)
        if peer is None:
            self.done = True
            return None
        self.yielded = True
        return peer

    # Indexes outside the lists the bits were sized for (peers added to a balancer's
    # public lists afterwards) are never marked: memory safety over a second try.
    cdef bint is_tried(self, Py_ssize_t index):
        if <size_t>index >= <size_t>(self.words << 6):
            return False
        return (self.tried[index >> 6] >> (index & 63)) & 1

    cdef void mark(self, Py_ssize_t index):
        if <size_t>index < <size_t>(self.words << 6):
            self.tried[index >> 6] |= (<uint64_t>1) << (index & 63)

    cdef void clear(self):
        memset(self.tried, 0, self.words * sizeof(uint64_t))


cdef class RoundRobin:
    """``round_robin`` (nginx's default): smooth weighted round robin with backups."""

    method = "round_robin"
    uses_backup = True

    def __init__(self, upstream, now=_monotonic):
        self.upstream = upstream
        self.name = upstream.name
        self.now = now
        primary = [s for s in upstream.servers if not s.backup]
        if not primary:
            raise ConfigError(f'no servers in upstream "{upstream.name}"',
                              upstream.file, upstream.line)
        backup = [s for s in upstream.servers if s.backup] if self.uses_backup else []
        self.peers = [Peer(server, i) for i, server in enumerate(primary)]
        self.backup = [Peer(server, i) for i, server in enumerate(backup)]
        # nginx's "single" case: one primary and no backup is never marked failed.
        self.single = len(self.peers) == 1 and not self.backup
        self.total_weight = sum(server.weight for server in primary)
        self.key_template = None

    @property
    def now(self):
        """The clock (seconds) used for fail_timeout windows."""
        return self.clock

    @now.setter
    def now(self, clock):
        self.clock = clock
        # time.monotonic is read straight from the same clock, without a Python call.
        self.native_clock = clock is _monotonic

    @property
    def all_peers(self):
        """Primary peers, then backup peers."""
        return self.peers + self.backup

    # Balancer interface

    def select(self, key=None):
        """Peers in preference order; each one yielded counts as an active connection."""
        return self.new_selection()

    cdef Selection new_selection(self):
        """select() for C callers (round robin and least_conn take no key)."""
        cdef Selection selection = Selection.__new__(Selection)
        selection.balancer = self
        selection.peers = self.peers
        cdef Py_ssize_t words = (max(len(self.peers), len(self.backup)) + 63) >> 6
        selection.words = words
        if words <= INLINE_WORDS:
            selection.tried = selection.inline_tried
        else:
            selection.tried = <uint64_t *>PyMem_Malloc(words * sizeof(uint64_t))
            if selection.tried == NULL:
                raise MemoryError()
        selection.clear()
        return selection

    def release(self, Peer peer, bint failed, header_time=None, response_time=None):
        """Report the outcome of a request sent to ``peer``."""
        self.finish(peer, failed, header_time, response_time)

    cdef int finish(self, Peer peer, bint failed, header_time, response_time) except -1:
        """release() for C callers."""
        cdef double now
        peer.conns -= 1
        if self.single:
            return 0
        if failed:
            now = self._now()
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
                if peer.fails >= peer.max_fails:
                    log.warn(f"upstream server temporarily disabled: {peer.name} "
                             f'in upstream "{self.name}"')
            if peer.effective_weight < 0:
                peer.effective_weight = 0
            return 0
        # A success after the fail_timeout window reopened clears the failures.
        if peer.accessed < peer.checked:
            peer.fails = 0
        _record_times(peer, header_time, response_time)
        return 0

    # Method hooks

    cdef Peer _get(self, Selection selection):
        return self._get_rr(selection)

    # Round robin proper

    cdef double _now(self) except? -1.0:
        cdef timespec ts
        if self.native_clock:
            clock_gettime(CLOCK_MONOTONIC, &ts)
            # The same rounding as time.monotonic(): integer nanoseconds, then seconds.
            return <double>(<int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9
        return self.clock()

    cdef Peer _get_rr(self, Selection selection):
        cdef Peer peer
        if self.single:
            peer = <Peer>self.peers[0]
            if peer.down or not peer.healthy or (peer.max_conns and peer.conns >= peer.max_conns):
                return None
            peer.conns += 1
            return peer
        while True:
            peer = self._best_rr(selection, self._now())
            if peer is not None:
                peer.conns += 1
                return peer
            if not self._to_backup(selection):
                return None

    cdef Peer _best_rr(self, Selection selection, double now):
        cdef Peer peer
        cdef Peer best = None
        cdef long total = 0
        cdef long weight
        for peer in selection.peers:
            if selection.is_tried(peer.index) or _excluded(peer, now):
                continue
            weight = peer.effective_weight
            peer.current_weight += weight
            total += weight
            if weight < peer.weight:
                # Recovering after failures: one more unit of weight per selection round.
                peer.effective_weight = weight + 1
            if best is None or peer.current_weight > best.current_weight:
                best = peer
        if best is None:
            return None
        best.current_weight -= total
        self._taken(selection, best, now)
        return best

    cdef void _taken(self, Selection selection, Peer peer, double now):
        """Mark ``peer`` tried and open a new fail_timeout window if the last one passed."""
        selection.mark(peer.index)
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now

    cdef bint _to_backup(self, Selection selection):
        """Switch the selection to the backup peers once (nginx resets the tried bits)."""
        if selection.peers is self.peers and self.backup:
            selection.peers = self.backup
            selection.clear()
            return True
        return False


cdef class LeastConn(RoundRobin):
    """nginx's least_conn: fewest active connections per unit of weight, ties by round robin."""

    method = "least_conn"

    def load(self, Peer peer):
        """What the method minimises: active connections per unit of weight."""
        return <double>peer.conns / <double>peer.weight

    cdef Peer _get(self, Selection selection):
        cdef Peer peer
        cdef Peer best
        cdef double now, value, lowest
        cdef long total
        cdef Py_ssize_t tied
        if self.single:
            return self._get_rr(selection)
        while True:
            now = self._now()
            best = None
            lowest = 0.0
            tied = 0
            for peer in selection.peers:
                if selection.is_tried(peer.index) or _excluded(peer, now):
                    continue
                # Correctly rounded division, as in the twin: equal ratios stay equal.
                value = <double>peer.conns / <double>peer.weight
                if best is None or value < lowest:
                    best, lowest, tied = peer, value, 1
                elif value == lowest:
                    tied += 1
            if best is not None:
                break
            if not self._to_backup(selection):
                return None
        total = 0
        if tied > 1:
            # Weighted round robin among the peers tied at the lowest load; the same
            # peers pass the filter again, as nothing it reads changed in between.
            for peer in selection.peers:
                if selection.is_tried(peer.index) or _excluded(peer, now):
                    continue
                if <double>peer.conns / <double>peer.weight != lowest:
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.weight:
                    peer.effective_weight += 1
                if peer.current_weight > best.current_weight:
                    best = peer
        best.current_weight -= total
        self._taken(selection, best, now)
        best.conns += 1
        return best
