"""``least_conn``: fewest active connections per unit of weight, ties by weighted round robin."""

from __future__ import annotations

from gateway.upstream.balancers.base import Attempt, RoundRobin
from gateway.upstream.peer import Peer


class LeastConn(RoundRobin):
    """nginx's least_conn."""

    method = "least_conn"

    def load(self, peer: Peer) -> float:
        """What the method minimises: active connections per unit of weight."""
        # Correctly rounded division keeps equal ratios equal and the order of
        # different ones, like nginx's cross-multiplied integer comparison.
        return peer.conns / peer.weight

    def _get(self, attempt: Attempt) -> Peer | None:
        if self.single:
            return self._get_rr(attempt)
        now = self.now()
        tried = attempt.tried
        load = self.load
        best = None
        lowest = 0.0
        tied = []
        for peer in attempt.peers:
            if tried >> peer.index & 1 or peer.down or not peer.healthy:
                continue
            if (peer.max_fails and peer.fails >= peer.max_fails
                    and now - peer.checked <= peer.fail_timeout):
                continue
            if peer.max_conns and peer.conns >= peer.max_conns:
                continue
            value = load(peer)
            if best is None or value < lowest:
                best, lowest, tied = peer, value, [peer]
            elif value == lowest:
                tied.append(peer)
        if best is None:
            if self._to_backup(attempt):
                return self._get(attempt)
            return None
        total = 0
        if len(tied) > 1:
            # Weighted round robin among the peers tied at the lowest load.
            for peer in tied:
                weight = peer.effective_weight
                peer.current_weight += weight
                total += weight
                if weight < peer.weight:
                    peer.effective_weight = weight + 1
                if peer.current_weight > best.current_weight:
                    best = peer
        best.current_weight -= total
        self._taken(attempt, best, now)
        best.conns += 1
        return best
