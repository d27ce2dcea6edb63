"""Smooth weighted round robin, the layer every nginx balancing method is built on."""

from __future__ import annotations

import time
from bisect import bisect_right
from itertools import accumulate
from typing import Callable, Iterator

from gateway.config.model import Upstream
from gateway.errors import ConfigError
from gateway.observe.errorlog import log
from gateway.upstream.peer import Peer


class Attempt:
    """Selection state of one request (nginx's per-request peer data)."""

    __slots__ = ("peers", "tried", "tries", "hash", "rehash", "key", "addr")

    def __init__(self, peers: list[Peer]):
        self.peers = peers        # the list in use: primary, then backup
        self.tried = 0            # bit i set: peers[i] already tried
        self.tries = 0            # failed hash/random probes (rehash limit)
        self.hash = 0
        self.rehash = 0
        self.key = b""
        self.addr = b""


def key_bytes(key: str | bytes | None) -> bytes:
    """A key as the bytes nginx would hash (variables hold latin-1 decoded bytes)."""
    if key is None:
        return b""
    if isinstance(key, bytes):
        return key
    try:
        return key.encode("latin-1")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogateescape")


class RoundRobin:
    """``round_robin`` (nginx's default): smooth weighted round robin with backups."""

    method = "round_robin"
    uses_backup = True

    def __init__(self, upstream: Upstream, now: Callable[[], float] = time.monotonic):
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
        self.total_weight = sum(peer.weight for peer in self.peers)
        self._weight_ends = list(accumulate(peer.weight for peer in self.peers))
        self.key_template: str | None = None

    @property
    def all_peers(self) -> list[Peer]:
        """Primary peers, then backup peers."""
        return self.peers + self.backup

    # Balancer interface

    def select(self, key: str | bytes | None = None) -> Iterator[Peer]:
        """Peers in preference order; each one yielded counts as an active connection."""
        attempt = self._attempt(key)
        while (peer := self._get(attempt)) is not None:
            yield peer
            if self.single:
                # nginx spends every try on a single peer at its first failure.
                return

    def release(self, peer: Peer, failed: bool, header_time: float | None = None,
                response_time: float | None = None) -> None:
        """Report the outcome of a request sent to ``peer``."""
        peer.conns -= 1
        if self.single:
            return
        if failed:
            now = self.now()
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
            return
        # A success after the fail_timeout window reopened clears the failures.
        if peer.accessed < peer.checked:
            peer.fails = 0
        peer.record_times(header_time, response_time)

    # Method hooks

    def _attempt(self, key: str | bytes | None) -> Attempt:
        return Attempt(self.peers)

    def _get(self, attempt: Attempt) -> Peer | None:
        return self._get_rr(attempt)

    # Round robin proper

    def _get_rr(self, attempt: Attempt) -> Peer | None:
        if self.single:
            peer = self.peers[0]
            if peer.down or not peer.healthy or (peer.max_conns and peer.conns >= peer.max_conns):
                return None
            peer.conns += 1
            return peer
        peer = self._best_rr(attempt, self.now())
        if peer is None:
            if self._to_backup(attempt):
                return self._get_rr(attempt)
            return None
        peer.conns += 1
        return peer

    def _best_rr(self, attempt: Attempt, now: float) -> Peer | None:
        best = None
        total = 0
        tried = attempt.tried
        # Peer.excluded() and _weigh() inlined: this loop runs for every request.
        for peer in attempt.peers:
            if tried >> peer.index & 1 or peer.down or not peer.healthy:
                continue
            if (peer.max_fails and peer.fails >= peer.max_fails
                    and now - peer.checked <= peer.fail_timeout):
                continue
            if peer.max_conns and peer.conns >= peer.max_conns:
                continue
            weight = peer.effective_weight
            peer.current_weight += weight
            total += weight
            if weight < peer.weight:
                peer.effective_weight = weight + 1
            if best is None or peer.current_weight > best.current_weight:
                best = peer
        if best is None:
            return None
        best.current_weight -= total
        self._taken(attempt, best, now)
        return best

    @staticmethod
    def _weigh(peer: Peer, best: Peer | None) -> Peer:
        """One smooth-weighted step for ``peer``; returns the new best (ties keep the earlier)."""
        peer.current_weight += peer.effective_weight
        if peer.effective_weight < peer.weight:
            # Recovering after failures: one more unit of weight per selection round.
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            return peer
        return best

    @staticmethod
    def _taken(attempt: Attempt, peer: Peer, now: float) -> None:
        """Mark ``peer`` tried and open a new fail_timeout window if the last one passed."""
        attempt.tried |= 1 << peer.index
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now

    def _to_backup(self, attempt: Attempt) -> bool:
        """Switch the attempt to the backup peers once (nginx resets the tried bits)."""
        if attempt.peers is self.peers and self.backup:
            attempt.peers = self.backup
            attempt.tried = 0
            return True
        return False

    def _weighted_index(self, value: int) -> int:
        """The primary peer owning ``value`` in [0, total_weight) by weight ranges."""
        return bisect_right(self._weight_ends, value)
