"""Consistent hashing: adding one server moves about 1/(N+1) of the keys, all onto it."""

import pytest

from gateway.upstream import build_balancer
from gateway.upstream.ring import Ring

from .helpers import pick, upstream

KEYS = [f"/objects/{i}" for i in range(6000)]


def owners(balancer):
    return {key: pick(balancer, key) for key in KEYS}


@pytest.mark.parametrize("hash_function", ["crc32", "mmh3"])
@pytest.mark.parametrize("count", [3, 5, 9])
def test_adding_a_server_moves_only_its_share(hash_function, count):
    names = [f"10.0.0.{i}:8080" for i in range(1, count + 2)]
    before = owners(build_balancer(upstream(*names[:count], method="hash", key="$uri",
                                            consistent=True), hash_function=hash_function))
    after = owners(build_balancer(upstream(*names, method="hash", key="$uri",
                                           consistent=True), hash_function=hash_function))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == names[-1] for key in moved)
    share = len(moved) / len(KEYS)
    expected = 1 / (count + 1)
    assert expected * 0.6 < share < expected * 1.4


def test_mmh3_ring_for_our_pools():
    ring = Ring(["vm0", "vm1", "vm2"])
    assert {ring.lookup(key) for key in KEYS[:300]} == {"vm0", "vm1", "vm2"}
    assert sorted(ring.preference("k")) == ["vm0", "vm1", "vm2"]
    grown = Ring(["vm0", "vm1", "vm2", "vm3"])
    moved = [key for key in KEYS if ring.lookup(key) != grown.lookup(key)]
    assert all(grown.lookup(key) == "vm3" for key in moved)
    assert 0.15 < len(moved) / len(KEYS) < 0.35


def test_ring_weights_shift_the_share():
    ring = Ring({"big": 3, "small": 1})
    share = sum(ring.lookup(key) == "big" for key in KEYS) / len(KEYS)
    assert 0.6 < share < 0.9
