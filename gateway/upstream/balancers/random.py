"""``random [two [least_conn]]``: weighted random choice, or the less loaded of two."""

from __future__ import annotations

import random as _random

from gateway.upstream.balancers.base import Attempt, RoundRobin
from gateway.upstream.balancers.ip_hash import MAX_REHASH
from gateway.upstream.peer import Peer


class Random(RoundRobin):
    """nginx's random balancer (no backup servers)."""

    method = "random"
    uses_backup = False

    def __init__(self, upstream, rng: _random.Random | None = None, **kwargs):
        super().__init__(upstream, **kwargs)
        self.rng = rng or _random.Random()
        self.two = upstream.balance.two

    def _peek(self) -> Peer:
        return self.peers[self._weighted_index(self.rng.randrange(self.total_weight))]

    def _get(self, attempt: Attempt) -> Peer | None:
        if attempt.tries > MAX_REHASH or self.single:
            return self._get_rr(attempt)
        now = self.now()
        first = None
        while True:
            peer = self._peek()
            if peer is not first and not (attempt.tried >> peer.index & 1 or peer.excluded(now)):
                if not self.two:
                    break
                if first is not None:
                    # Of the two, the one with fewer connections per weight wins; ties keep the second.
                    if peer.conns * first.weight > first.conns * peer.weight:
                        peer = first
                    break
                first = peer
            attempt.tries += 1
            if attempt.tries > MAX_REHASH:
                return self._get_rr(attempt)
        peer.conns += 1
        self._taken(attempt, peer, now)
        return peer
