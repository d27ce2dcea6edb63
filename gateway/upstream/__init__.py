"""Upstream peers, nginx's balancing methods and active health checks.

Use::

    balancer = build_balancer(upstream)        # once per worker, at config load
    key = render(balancer.key_template)        # None, "$remote_addr" or the hash key
    for peer in balancer.select(key):          # preference order; a retry takes the next
        ...connect to peer.address...
        balancer.release(peer, failed, header_time, response_time)

Every yielded peer already counts as an active connection until released.
``failed=True`` is nginx's NGX_PEER_FAILED: an error, a timeout, an invalid
header or a status listed in proxy_next_upstream that led to another try; it
feeds max_fails/fail_timeout. Latencies are only used by ``least_time``.
"""

from gateway.upstream.balancers import BALANCERS, build_balancer
from gateway.upstream.health import start_health_checks
from gateway.upstream.peer import Peer

__all__ = ["BALANCERS", "Peer", "build_balancer", "start_health_checks"]
