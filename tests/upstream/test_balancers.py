"""Balancer semantics at unit level: shape, tries, down, backup, max_conns and each method."""

import random

import pytest

from gateway.errors import ConfigError
from gateway.upstream import BALANCERS, build_balancer

from .helpers import pick, sequence, upstream


def test_registry_uses_directive_names():
    assert set(BALANCERS) == {"round_robin", "least_conn", "ip_hash", "hash", "random",
                              "least_time"}


def test_smooth_weighted_round_robin_5_1_1():
    balancer = build_balancer(upstream(("a", {"weight": 5}), ("b", {"weight": 1}),
                                       ("c", {"weight": 1})))
    assert sequence(balancer, 14) == list("aabacaa") * 2
    assert balancer.key_template is None


def test_each_yielded_peer_counts_as_a_connection_until_released():
    balancer = build_balancer(upstream("a", "b"))
    peer = next(balancer.select())
    assert peer.conns == 1 and peer.address == ("127.0.0.1", 9000)
    balancer.release(peer, False)
    assert peer.conns == 0


def test_iterator_tries_each_peer_once_then_backups_then_stops():
    balancer = build_balancer(upstream("a", ("b", {"weight": 2}), "c",
                                       ("x", {"backup": True}), ("y", {"backup": True})))
    tried = []
    for peer in balancer.select():
        tried.append(peer.name)
        balancer.release(peer, True)
    assert sorted(tried[:3]) == ["a", "b", "c"]
    assert sorted(tried[3:]) == ["x", "y"]


def test_down_peers_are_never_chosen():
    balancer = build_balancer(upstream("a", ("b", {"down": True}), "c"))
    assert "b" not in sequence(balancer, 20)


def test_all_down_yields_nothing():
    balancer = build_balancer(upstream(("a", {"down": True}), ("b", {"down": True})))
    assert list(balancer.select()) == []


def test_upstream_of_backups_only_is_a_config_error():
    with pytest.raises(ConfigError, match='no servers in upstream "backend"'):
        build_balancer(upstream(("a", {"backup": True})))


def test_max_conns_skips_a_full_peer():
    balancer = build_balancer(upstream(("a", {"max_conns": 1}), ("b", {"weight": 3})))
    held = next(balancer.select())          # "b" first: the heavier one
    assert held.name == "b"
    first_a = next(balancer.select())
    assert first_a.name == "a"
    # While "a" holds its one connection it is skipped.
    assert all(pick(balancer) == "b" for _ in range(6))
    balancer.release(first_a, False)
    assert "a" in sequence(balancer, 4)


def test_single_server_with_max_conns_full_yields_nothing():
    balancer = build_balancer(upstream(("a", {"max_conns": 1})))
    held = next(balancer.select())
    assert list(balancer.select()) == []
    balancer.release(held, False)
    assert pick(balancer) == "a"


def test_single_server_gets_one_try_and_no_failure_accounting():
    balancer = build_balancer(upstream("a"))
    peers = []
    for peer in balancer.select():
        peers.append(peer)
        balancer.release(peer, True)
    assert [p.name for p in peers] == ["a"]
    assert peers[0].fails == 0 and peers[0].conns == 0


def test_least_conn_prefers_fewest_connections_per_weight():
    balancer = build_balancer(upstream(("a", {"weight": 2}), "b", method="least_conn"))
    held = [next(balancer.select()) for _ in range(3)]
    # conns/weight: a holds 2 of weight 2, b holds 1 of weight 1: a tie, broken by round robin.
    assert sorted(p.name for p in held) == ["a", "a", "b"]
    one_b = next(p for p in held if p.name == "b")
    balancer.release(one_b, False)
    assert pick(balancer) == "b"


def test_least_conn_ties_follow_weighted_round_robin():
    balancer = build_balancer(upstream(("a", {"weight": 5}), "b", "c", method="least_conn"))
    assert sequence(balancer, 7) == list("aabacaa")


def test_least_conn_uses_backup_when_primaries_are_down():
    balancer = build_balancer(upstream(("a", {"down": True}), ("z", {"backup": True}),
                                       method="least_conn"))
    assert sequence(balancer, 3) == ["z"] * 3


def test_random_follows_weights_and_tries_each_peer_once():
    balancer = build_balancer(upstream(("a", {"weight": 3}), "b", method="random"),
                              rng=random.Random(7))
    counts = {"a": 0, "b": 0}
    for _ in range(4000):
        counts[pick(balancer)] += 1
    assert 2700 < counts["a"] < 3300
    tried = []
    for peer in balancer.select():
        tried.append(peer.name)
        balancer.release(peer, True)
    assert sorted(tried) == ["a", "b"]


def test_random_two_picks_the_less_loaded_of_two():
    balancer = build_balancer(upstream("a", "b", "c", method="random", two=True),
                              rng=random.Random(1))
    held = next(balancer.select())
    # With one peer busy, the two candidates compared always include an idle one.
    for _ in range(50):
        assert pick(balancer) != held.name


def test_least_time_prefers_the_faster_peer():
    balancer = build_balancer(upstream("fast", "slow", method="least_time"))
    for _ in range(4):
        for peer_name, seconds in (("fast", 0.010), ("slow", 0.200)):
            peer = next(p for p in balancer.peers if p.name == peer_name)
            peer.conns += 1
            balancer.release(peer, False, header_time=seconds, response_time=seconds)
    assert sequence(balancer, 5) == ["fast"] * 5
    # Load counts too: the fast one with many requests in flight loses to the slow one.
    fast = balancer.peers[0]
    fast.conns = 40
    assert pick(balancer) == "slow"


def test_least_time_last_byte_uses_response_time():
    balancer = build_balancer(upstream("a", "b", method="least_time", least_time="last_byte"))
    a, b = balancer.peers
    a.record_times(header_time=0.001, response_time=0.5)
    b.record_times(header_time=0.1, response_time=0.2)
    assert pick(balancer) == "b"


def test_unsampled_least_time_peers_share_by_weight():
    balancer = build_balancer(upstream(("a", {"weight": 2}), "b", method="least_time"))
    assert sequence(balancer, 6) == list("abaaba")


def test_hash_key_template_and_rr_fallback_on_empty_key():
    balancer = build_balancer(upstream("a", "b", "c", method="hash", key="$request_uri"))
    assert balancer.key_template == "$request_uri"
    assert sequence(balancer, 6, key="") == list("abcabc")


def test_hash_is_stable_and_retries_elsewhere():
    balancer = build_balancer(upstream("a", "b", "c", "d", method="hash", key="$uri"))
    assert len({pick(balancer, "/some/key") for _ in range(10)}) == 1
    tried = []
    for peer in balancer.select("/some/key"):
        tried.append(peer.name)
        balancer.release(peer, True)
    assert sorted(tried) == ["a", "b", "c", "d"]


def test_hash_ignores_backup_servers():
    balancer = build_balancer(upstream("a", ("z", {"backup": True}), method="hash", key="k"))
    assert [p.name for p in balancer.all_peers] == ["a"]


def test_ip_hash_uses_the_first_three_octets():
    balancer = build_balancer(upstream(*"abcdefgh", method="ip_hash"))
    assert pick(balancer, "10.1.2.3") == pick(balancer, "10.1.2.200")
    chosen = {pick(balancer, f"10.1.{i}.1") for i in range(64)}
    assert len(chosen) > 4


def test_ip_hash_handles_ipv6_and_junk():
    balancer = build_balancer(upstream("a", "b", "c", method="ip_hash"))
    assert pick(balancer, "2001:db8::1") in {"a", "b", "c"}
    assert pick(balancer, "unix:") == pick(balancer, "not an address")


def test_consistent_hash_walks_the_ring_when_the_owner_is_down():
    servers = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    up = upstream(*servers, method="hash", key="$uri", consistent=True)
    balancer = build_balancer(up)
    owners = {f"/k{i}": pick(balancer, f"/k{i}") for i in range(200)}
    up.servers[1].down = True
    without = build_balancer(up)
    for key, owner in owners.items():
        moved = pick(without, key)
        assert moved != servers[1]
        if owner != servers[1]:
            assert moved == owner


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        build_balancer(upstream("a", method="fair"))
