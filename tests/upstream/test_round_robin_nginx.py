"""Round robin, down, backup and passive failures: the same peer sequence as real nginx."""

import pytest

from gateway.config.model import Balance
from gateway.upstream import build_balancer

from .nginx_harness import Backend, Pool, ask, assert_same, simulate

pytestmark = pytest.mark.nginx

REQUESTS = 40


def sequences(run_nginx, pool, requests=REQUESTS, key=None):
    """(nginx's sequence of answering backends, ours) for ``requests`` sequential requests."""
    nginx = run_nginx([pool])
    conn = nginx.client(pool.name)
    try:
        theirs = [ask(conn) for _ in range(requests)]
    finally:
        conn.close()
    balancer = build_balancer(pool.model())
    dead = {b.name for b in pool.backends if b.dead}
    ours = [simulate(balancer, key, dead, pool.names_by_address()) for _ in range(requests)]
    assert_same(theirs, ours, nginx)
    return theirs, ours


@pytest.mark.parametrize("weights", [(5, 1, 1), (3, 2, 1), (1, 1, 1), (7, 3, 2, 1)])
def test_weighted_round_robin(run_nginx, weights):
    pool = Pool("rr", "", [Backend(f"s{i}", weight=w) for i, w in enumerate(weights)])
    theirs, ours = sequences(run_nginx, pool)
    # Smooth: 5/1/1 interleaves the light servers instead of bunching the heavy one.
    if weights == (5, 1, 1):
        assert theirs[:7] == ["s0", "s0", "s1", "s0", "s2", "s0", "s0"]


def test_down_server_is_skipped(run_nginx):
    pool = Pool("rr", "", [Backend("a", weight=3), Backend("b", weight=2, down=True),
                           Backend("c", weight=1)])
    theirs, ours = sequences(run_nginx, pool)
    assert "b" not in theirs


def test_backup_serves_when_primaries_fail(run_nginx):
    pool = Pool("rr", "", [Backend("a", weight=2, dead=True, fail_timeout=60),
                           Backend("b", dead=True, fail_timeout=60),
                           Backend("c", weight=2, backup=True), Backend("d", backup=True)])
    theirs, ours = sequences(run_nginx, pool)
    assert set(theirs) == {"c", "d"}


def test_backup_idle_while_a_primary_lives(run_nginx):
    pool = Pool("rr", "", [Backend("a", weight=2), Backend("b", dead=True, fail_timeout=60),
                           Backend("c", backup=True)])
    theirs, ours = sequences(run_nginx, pool)
    assert set(theirs) == {"a"}


def test_failures_lower_effective_weight_until_max_fails(run_nginx):
    # The dead peer loses weight/max_fails per failure and drops out after 3 failures.
    pool = Pool("rr", "", [Backend("a", weight=3), Backend("dead", weight=6, max_fails=3,
                                                           fail_timeout=60, dead=True),
                           Backend("c", weight=2)])
    theirs, ours = sequences(run_nginx, pool)


def test_single_server_is_never_marked_failed(run_nginx):
    pool = Pool("one", "", [Backend("dead", dead=True, fail_timeout=60)])
    theirs, ours = sequences(run_nginx, pool, requests=5)
    assert ours == theirs == ["<502>"] * 5
    balancer = build_balancer(pool.model())
    peer = next(balancer.select())
    balancer.release(peer, True)
    assert peer.fails == 0


def test_least_conn_sequential_matches_round_robin_ties(run_nginx):
    # Sequential requests leave every peer at 0 connections: ties go by weighted round robin.
    pool = Pool("lc", "least_conn", [Backend("a", weight=3), Backend("b", weight=1),
                                     Backend("c", weight=2, dead=True, fail_timeout=60)],
                balance=Balance(method="least_conn"))
    theirs, ours = sequences(run_nginx, pool)
