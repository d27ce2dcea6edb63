"""A ketama ring on MurmurHash3 for our own keyed structures (e.g. unikernel pools).

Not nginx compatible on purpose: where nginx decides the peer, the ``hash ...
consistent`` balancer uses nginx's crc32 points instead.
"""

from __future__ import annotations

from array import array
from typing import Iterator

import mmh3

from gateway.upstream import hashing
from gateway.upstream.hashing_py import ring_arrays

POINTS_PER_WEIGHT = 160


def mmh3_hash(data: bytes) -> int:
    """Unsigned 32-bit MurmurHash3 (seed 0)."""
    return mmh3.hash(data, 0, False)


def mmh3_points(names: list[bytes], weights: list[int]) -> tuple[array, array]:
    """Sorted unique ring points and the owner index of each; point j of a name hashes "NAME-j"."""
    points = []
    for owner, (name, weight) in enumerate(zip(names, weights)):
        for j in range(weight * POINTS_PER_WEIGHT):
            points.append((mmh3_hash(b"%b-%d" % (name, j)), owner))
    return ring_arrays(points)


class Ring:
    """Consistent hashing of keys onto named nodes; adding a node moves only ~1/(N+1) of keys."""

    def __init__(self, nodes: dict[str, int] | list[str]):
        weights = nodes if isinstance(nodes, dict) else {name: 1 for name in nodes}
        self.nodes = list(weights)
        if not self.nodes:
            raise ValueError("a ring needs at least one node")
        self.points, owners = mmh3_points([name.encode() for name in self.nodes],
                                          [weights[name] for name in self.nodes])
        self._owners = [self.nodes[owner] for owner in owners]

    def lookup(self, key: str | bytes) -> str:
        """The node owning ``key``."""
        return next(self.preference(key))

    def preference(self, key: str | bytes) -> Iterator[str]:
        """Every node once, in ring order from ``key``'s point (for failover)."""
        data = key.encode() if isinstance(key, str) else key
        start = hashing.ketama_find(self.points, mmh3_hash(data))
        seen = set()
        count = len(self._owners)
        for step in range(count):
            name = self._owners[(start + step) % count]
            if name not in seen:
                seen.add(name)
                yield name
                if len(seen) == len(self.nodes):
                    return
