"""max_fails / fail_timeout with a controllable clock: out for fail_timeout, then one probe."""

import pytest

from gateway.upstream import build_balancer

from .helpers import Clock, pick, sequence, upstream

METHODS = [
    {"method": "round_robin"},
    {"method": "least_conn"},
    {"method": "hash", "key": "$uri"},
    {"method": "hash", "key": "$uri", "consistent": True},
    {"method": "ip_hash"},
    {"method": "random"},
    {"method": "least_time"},
]


def keys_for(balancer):
    """Keys that spread over the peers for every method (client addresses for ip_hash)."""
    if balancer.method == "ip_hash":
        return [f"10.{i}.{i * 7 % 256}.1" for i in range(100)]
    return [f"/key{i}" for i in range(100)]


def fail(balancer, name):
    """Send requests until ``name`` is chosen, failing that one attempt."""
    for key in keys_for(balancer):
        for peer in balancer.select(key):
            if peer.name == name:
                balancer.release(peer, True)
                return
            balancer.release(peer, False)
            break
    raise AssertionError(f"{name} never chosen")


@pytest.mark.parametrize("options", METHODS, ids=lambda o: " ".join(map(str, o.values())))
def test_failed_peer_is_out_for_fail_timeout_then_gets_one_probe(options):
    clock = Clock()
    servers = [(n, {"max_fails": 1, "fail_timeout": 10.0}) for n in ("a", "b", "c")]
    balancer = build_balancer(upstream(*servers, **options), now=clock)
    fail(balancer, "a")
    keys = keys_for(balancer)
    assert "a" not in [pick(balancer, key) for key in keys]
    clock.advance(10.0)                        # fail_timeout not yet *passed*
    assert "a" not in [pick(balancer, key) for key in keys]
    clock.advance(0.5)
    probe = None
    held = []
    for key in keys:
        peer = next(balancer.select(key))
        held.append(peer)
        if peer.name == "a":
            probe = peer
            break
    assert probe is not None
    # While the probe is in flight, nobody else is sent to "a".
    assert "a" not in [pick(balancer, key) for key in keys]
    for peer in held:
        balancer.release(peer, peer is not probe)   # the probe succeeds
    assert probe.fails == 0
    assert "a" in [pick(balancer, key) for key in keys]


def test_failed_probe_takes_the_peer_out_for_another_fail_timeout():
    clock = Clock()
    balancer = build_balancer(upstream(("a", {"fail_timeout": 5.0}), "b"), now=clock)
    fail(balancer, "a")
    clock.advance(6)
    fail(balancer, "a")
    clock.advance(4)
    assert "a" not in sequence(balancer, 10)
    clock.advance(2)
    assert "a" in sequence(balancer, 10)


def test_failures_accumulate_within_the_window_before_max_fails():
    # nginx only clears failures on a success after a new window opened.
    clock = Clock()
    balancer = build_balancer(upstream(("a", {"max_fails": 3, "fail_timeout": 30.0}), "b"),
                              now=clock)
    a = balancer.peers[0]
    fail(balancer, "a")
    fail(balancer, "a")
    sequence(balancer, 6)                     # successes on "a" in the same window
    assert a.fails == 2
    fail(balancer, "a")
    assert a.fails == 3
    assert "a" not in sequence(balancer, 10)


def test_success_after_the_window_resets_failures():
    clock = Clock()
    balancer = build_balancer(upstream(("a", {"max_fails": 3, "fail_timeout": 30.0}), "b"),
                              now=clock)
    a = balancer.peers[0]
    fail(balancer, "a")
    clock.advance(31)
    assert "a" in sequence(balancer, 4)
    assert a.fails == 0


def test_failure_lowers_effective_weight_which_ramps_back():
    clock = Clock()
    balancer = build_balancer(upstream(("a", {"weight": 4, "max_fails": 2}), "b"), now=clock)
    a = balancer.peers[0]
    fail(balancer, "a")
    assert a.effective_weight == 2            # weight - weight / max_fails
    sequence(balancer, 2)
    assert a.effective_weight == 4            # +1 per selection round


def test_max_fails_zero_disables_accounting():
    clock = Clock()
    balancer = build_balancer(upstream(("a", {"max_fails": 0}), "b"), now=clock)
    for _ in range(5):
        fail(balancer, "a")
    assert "a" in sequence(balancer, 4)


def test_all_failed_means_no_peer_until_a_timeout_passes():
    clock = Clock()
    balancer = build_balancer(upstream("a", "b"), now=clock)
    fail(balancer, "a")
    fail(balancer, "b")
    assert list(balancer.select()) == []
    clock.advance(11)
    assert pick(balancer) in {"a", "b"}


def test_backup_takes_over_while_primaries_are_failed():
    clock = Clock()
    balancer = build_balancer(upstream("a", ("z", {"backup": True})), now=clock)
    names = []
    for peer in balancer.select():
        names.append(peer.name)
        balancer.release(peer, peer.name == "a")
    assert names == ["a", "z"]
    assert sequence(balancer, 3) == ["z"] * 3
    clock.advance(11)
    assert pick(balancer) == "a"
