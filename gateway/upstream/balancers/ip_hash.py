"""``ip_hash``: the client's /24 (IPv4) or whole address (IPv6) picks the peer."""

from __future__ import annotations

from gateway.upstream import hashing
from gateway.upstream.balancers.base import Attempt, RoundRobin
from gateway.upstream.peer import Peer

# nginx gives up rehashing after this many unusable picks and falls back to round robin.
MAX_REHASH = 20


class IpHash(RoundRobin):
    """nginx's ip_hash (no backup servers)."""

    method = "ip_hash"
    uses_backup = False

    def __init__(self, upstream, **kwargs):
        super().__init__(upstream, **kwargs)
        self.key_template = "$remote_addr"

    def _attempt(self, key) -> Attempt:
        attempt = Attempt(self.peers)
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        attempt.addr = hashing.ip_hash_addr(key or "")
        attempt.hash = 89
        return attempt

    def _get(self, attempt: Attempt) -> Peer | None:
        if attempt.tries > MAX_REHASH or self.single:
            return self._get_rr(attempt)
        now = self.now()
        value = attempt.hash
        while True:
            value = hashing.ip_hash_next(attempt.addr, value)
            peer = self.peers[self._weighted_index(value % self.total_weight)]
            if not (attempt.tried >> peer.index & 1 or peer.excluded(now)):
                break
            attempt.tries += 1
            if attempt.tries > MAX_REHASH:
                return self._get_rr(attempt)
        peer.conns += 1
        self._taken(attempt, peer, now)
        attempt.hash = value
        return peer
