"""hash, hash consistent and ip_hash choose the same server real nginx chooses."""

import random

import pytest

from gateway.config.model import Balance
from gateway.upstream import build_balancer

from .nginx_harness import Backend, Pool, ask, assert_same, simulate

pytestmark = pytest.mark.nginx

KEYS = 300


def backends():
    # Unequal weights, plus a down server so that some keys need nginx's rehash walk.
    return [Backend("a", weight=1), Backend("b", weight=2), Backend("c", weight=1, down=True),
            Backend("d", weight=3), Backend("e", weight=1)]


def random_keys(seed):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.~"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(KEYS)]


def compare(nginx, pool, requests):
    """requests: (key for our balancer, path, headers) triples."""
    conn = nginx.client(pool.name)
    try:
        theirs = [ask(conn, path, headers) for _key, path, headers in requests]
    finally:
        conn.close()
    balancer = build_balancer(pool.model())
    names = pool.names_by_address()
    ours = [simulate(balancer, key, set(), names) for key, _path, _headers in requests]
    assert_same(theirs, ours, nginx)
    return theirs, ours


@pytest.mark.parametrize("consistent", [False, True], ids=["hash", "consistent"])
def test_hash_header_key(run_nginx, consistent):
    suffix = " consistent" if consistent else ""
    pool = Pool("h", f"hash $http_x_key{suffix}", backends(),
                balance=Balance(method="hash", key="$http_x_key", consistent=consistent))
    nginx = run_nginx([pool])
    keys = random_keys(1)
    theirs, ours = compare(nginx, pool, [(key, "/", {"X-Key": key}) for key in keys])
    assert "c" not in theirs and len(set(theirs)) == 4


@pytest.mark.parametrize("consistent", [False, True], ids=["hash", "consistent"])
def test_hash_request_uri(run_nginx, consistent):
    suffix = " consistent" if consistent else ""
    pool = Pool("u", f"hash $request_uri{suffix}", backends(),
                balance=Balance(method="hash", key="$request_uri", consistent=consistent))
    nginx = run_nginx([pool])
    paths = [f"/{key}?q={i}" for i, key in enumerate(random_keys(2))]
    theirs, ours = compare(nginx, pool, [(path, path, {}) for path in paths])
    assert len(set(theirs)) == 4


def test_ip_hash_by_client_address(run_nginx):
    pool = Pool("ip", "ip_hash", backends(), balance=Balance(method="ip_hash"))
    nginx = run_nginx([pool])
    rng = random.Random(4)
    # The whole of 127.0.0.0/8 is local on Linux: each /24 is another client for ip_hash.
    sources = [f"127.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
               for _ in range(KEYS)]
    theirs = []
    for source in sources:
        conn = nginx.client(pool.name, source=source)
        try:
            theirs.append(ask(conn))
        finally:
            conn.close()
    balancer = build_balancer(pool.model())
    assert balancer.key_template == "$remote_addr"
    names = pool.names_by_address()
    ours = [simulate(balancer, source, set(), names) for source in sources]
    assert_same(theirs, ours, nginx)
    assert len(set(theirs)) == 4


def test_consistent_points_come_from_the_name_as_written(run_nginx):
    # Same addresses, different spellings: nginx hashes the server's text, not its address.
    written = [Backend("a", host_name="localhost"), Backend("b", weight=2),
               Backend("c", host_name="localhost"), Backend("d", host_name="127.1")]
    pool = Pool("w", "hash $request_uri consistent", written,
                balance=Balance(method="hash", key="$request_uri", consistent=True))
    nginx = run_nginx([pool])
    paths = [f"/{key}" for key in random_keys(3)]
    theirs, _ours = compare(nginx, pool, [(path, path, {}) for path in paths])
    resolved = Pool("w", "", [Backend(b.name, weight=b.weight, port=b.port) for b in written],
                    balance=pool.balance)
    by_address = build_balancer(resolved.model())
    names = resolved.names_by_address()
    assert [simulate(by_address, path, set(), names) for path in paths] != theirs


def test_empty_hash_key_falls_back_to_round_robin(run_nginx):
    pool = Pool("h", "hash $http_x_key", backends(),
                balance=Balance(method="hash", key="$http_x_key"))
    nginx = run_nginx([pool])
    theirs, ours = compare(nginx, pool, [("", "/", {})] * 30)
