"""Upstream peers, nginx's balancing methods and active health checks."""

from gateway.upstream.balancers import BALANCERS, build_balancer
from gateway.upstream.peer import Peer

__all__ = ["BALANCERS", "Peer", "build_balancer", "start_health_checks"]


def start_health_checks(balancers, loop=None):
    """Start active health checks (see ``gateway.upstream.health``); returns a handle with ``.stop()``."""
    from gateway.upstream.health import start_health_checks as start
    return start(balancers, loop)
