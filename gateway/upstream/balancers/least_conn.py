"""``least_conn``: fewest active connections per unit of weight, ties by weighted round robin."""

from __future__ import annotations

from gateway.upstream.balancers.base import Attempt, RoundRobin
from gateway.upstream.peer import Peer


class LeastConn(RoundRobin):
    """nginx's least_conn."""

    method = "least_conn"

    def _less(self, peer: Peer, best: Peer) -> bool:
        # Cross-multiplied so that conns/weight compares exactly.
        return peer.conns * best.weight < best.conns * peer.weight

    def _same(self, peer: Peer, best: Peer) -> bool:
        return peer.conns * best.weight == best.conns * peer.weight

    def _get(self, attempt: Attempt) -> Peer | None:
        if self.single:
            return self._get_rr(attempt)
        now = self.now()
        peers = attempt.peers
        tried = attempt.tried
        best = None
        many = False
        less, same = self._less, self._same
        for peer in peers:
            if tried >> peer.index & 1 or peer.excluded(now):
                continue
            if best is None or less(peer, best):
                best, many = peer, False
            elif same(peer, best):
                many = True
        if best is None:
            if self._to_backup(attempt):
                return self._get(attempt)
            return None
        total = 0
        if many:
            # Weighted round robin among the peers tied with the first best one.
            first = best
            for peer in peers[first.index:]:
                if tried >> peer.index & 1 or peer.excluded(now) or not self._same(peer, first):
                    continue
                total += peer.effective_weight
                peer.current_weight += peer.effective_weight
                if peer.effective_weight < peer.weight:
                    peer.effective_weight += 1
                if peer.current_weight > best.current_weight:
                    best = peer
        best.current_weight -= total
        self._taken(attempt, best, now)
        best.conns += 1
        return best
