"""Every balancing method, registered under its directive name."""

from __future__ import annotations

from gateway._select import load_fast
from gateway.config.model import Upstream
from gateway.upstream.balancers.base import Attempt, RoundRobin
from gateway.upstream.balancers.hash import ConsistentHash, Hash
from gateway.upstream.balancers.ip_hash import IpHash
from gateway.upstream.balancers.least_conn import LeastConn
from gateway.upstream.balancers.least_time import LeastTime
from gateway.upstream.balancers.random import Random

BALANCERS = {
    "round_robin": RoundRobin,
    "least_conn": LeastConn,
    "ip_hash": IpHash,
    "hash": Hash,
    "random": Random,
    "least_time": LeastTime,
}

# Compiled twins of the methods on the per-request path (the classes above are their
# specification); empty when _fastpath.balancing is not built or GATEWAY_NO_EXTENSIONS=1.
_fast = load_fast("balancing")
COMPILED = {"round_robin": _fast.RoundRobin, "least_conn": _fast.LeastConn} if _fast else {}


def build_balancer(upstream: Upstream, hash_function: str = "crc32", **options) -> RoundRobin:
    """The balancer for ``upstream``'s method; ``options`` may inject ``now`` (clock) or ``rng``.

    ``hash_function="mmh3"`` selects a MurmurHash3 ring for ``hash KEY consistent``
    (our own pools; nginx compatibility needs the default "crc32").
    """
    balance = upstream.balance
    if balance.method == "hash" and balance.consistent:
        return ConsistentHash(upstream, hash_function=hash_function, **options)
    try:
        cls = COMPILED.get(balance.method) or BALANCERS[balance.method]
    except KeyError:
        raise ValueError(f"unknown balancing method {balance.method!r}") from None
    return cls(upstream, **options)


__all__ = ["Attempt", "BALANCERS", "COMPILED", "ConsistentHash", "Hash", "IpHash", "LeastConn",
           "LeastTime", "Random", "RoundRobin", "build_balancer"]
