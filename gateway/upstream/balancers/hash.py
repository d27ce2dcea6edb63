"""``hash KEY`` (nginx's crc32 mapping with rehash) and ``hash KEY consistent`` (ketama)."""

from __future__ import annotations

from gateway.upstream import hashing
from gateway.upstream.balancers.base import Attempt, RoundRobin, key_bytes
from gateway.upstream.balancers.ip_hash import MAX_REHASH
from gateway.upstream.peer import Peer


class Hash(RoundRobin):
    """nginx's ``hash KEY``: crc32-based, compatible with Cache::Memcached."""

    method = "hash"
    uses_backup = False

    def __init__(self, upstream, **kwargs):
        super().__init__(upstream, **kwargs)
        self.key_template = upstream.balance.key

    def _attempt(self, key) -> Attempt:
        attempt = Attempt(self.peers)
        attempt.key = key_bytes(key)
        return attempt

    def _get(self, attempt: Attempt) -> Peer | None:
        if attempt.tries > MAX_REHASH or self.single or not attempt.key:
            return self._get_rr(attempt)
        now = self.now()
        while True:
            step = hashing.hash_step(attempt.key, attempt.rehash)
            attempt.hash = (attempt.hash + step) & 0xFFFFFFFF
            attempt.rehash += 1
            peer = self.peers[self._weighted_index(attempt.hash % self.total_weight)]
            if not (attempt.tried >> peer.index & 1 or peer.excluded(now)):
                break
            attempt.tries += 1
            if attempt.tries > MAX_REHASH:
                return self._get_rr(attempt)
        peer.conns += 1
        self._taken(attempt, peer, now)
        return peer


class ConsistentHash(Hash):
    """nginx's ``hash KEY consistent``: a ketama ring of weight*160 points per server.

    ``hash_function="mmh3"`` builds the same kind of ring on MurmurHash3 for our
    own keyed pools (not nginx compatible).
    """

    method = "hash consistent"

    def __init__(self, upstream, hash_function: str = "crc32", **kwargs):
        super().__init__(upstream, **kwargs)
        # Points belong to a server *name*: peers resolved from one name share them.
        names = [peer.name.encode() for peer in self.peers]
        weights = [peer.weight for peer in self.peers]
        if hash_function == "crc32":
            self.points, owners = hashing.ketama_points(names, weights)
            self._key_hash = hashing.crc32
        elif hash_function == "mmh3":
            from gateway.upstream.ring import mmh3_hash, mmh3_points
            self.points, owners = mmh3_points(names, weights)
            self._key_hash = mmh3_hash
        else:
            raise ValueError(f"unknown hash function {hash_function!r}")
        self.hash_function = hash_function
        self.point_names = [self.peers[owner].name for owner in owners]

    def _attempt(self, key) -> Attempt:
        attempt = super()._attempt(key)
        attempt.hash = hashing.ketama_find(self.points, self._key_hash(attempt.key))
        return attempt

    def _get(self, attempt: Attempt) -> Peer | None:
        if attempt.tries > MAX_REHASH or self.single or not attempt.key:
            return self._get_rr(attempt)
        now = self.now()
        tried = attempt.tried
        while True:
            name = self.point_names[attempt.hash % len(self.point_names)]
            best = None
            total = 0
            for peer in self.peers:
                if peer.name != name or tried >> peer.index & 1 or peer.excluded(now):
                    continue
                total += peer.effective_weight
                best = self._weigh(peer, best)
            if best is not None:
                break
            # The point's server is unusable: walk on to the next point.
            attempt.hash += 1
            attempt.tries += 1
            if attempt.tries > MAX_REHASH:
                return self._get_rr(attempt)
        best.current_weight -= total
        best.conns += 1
        self._taken(attempt, best, now)
        return best
