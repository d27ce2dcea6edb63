"""``least_time header|last_byte``: response-time aware ("fair") balancing.

nginx's open-source build lacks it; the load is the peer's moving average of
response time times (1 + its active connections), per unit of weight. Peers
without a sample count as 0, so each one is measured before it is judged.
"""

from __future__ import annotations

from gateway.upstream.balancers.least_conn import LeastConn
from gateway.upstream.peer import Peer


class LeastTime(LeastConn):
    """Lowest EWMA(time) * (1 + conns) / weight; ties by weighted round robin."""

    method = "least_time"

    def __init__(self, upstream, **kwargs):
        super().__init__(upstream, **kwargs)
        self.last_byte = upstream.balance.least_time == "last_byte"

    def load(self, peer: Peer) -> float:
        """The peer's expected cost for one more request."""
        average = peer.response_time if self.last_byte else peer.header_time
        return (average or 0.0) * (1 + peer.conns) / peer.weight
