"""ServerRouter: nginx's virtual-server choice on both implementations."""

import random

import pytest

from gateway.config.model import Listen, LocationSettings, Server

KEY = ("0.0.0.0", 80)


def server(*names, listens=None):
    return Server(listens=listens or [Listen("0.0.0.0", 80)], server_names=list(names),
                  locations=[], settings=LocationSettings())


def test_priority_order(router):
    first = server("_")
    exact = server("www.example.com")
    head = server("*.example.com")
    tail = server("www.example.*")
    regex = server(r"~^www\d+\.example\.net$")
    routes = router.ServerRouter([first, exact, head, tail, regex])
    select = routes.select
    assert select(KEY, "www.example.com") is exact
    assert select(KEY, "mail.example.com") is head
    assert select(KEY, "www.example.org") is tail
    assert select(KEY, "www2.example.net") is regex
    assert select(KEY, "other.org") is first
    assert select(KEY, None) is first
    assert select(KEY, "") is first


def test_host_normalisation(router):
    exact = server("example.com")
    select = router.ServerRouter([server("a"), exact]).select
    for host in ("Example.COM", "example.com:8080", "example.com.", "EXAMPLE.com.:80"):
        assert select(KEY, host) is exact, host
    v6 = server("[::1]")
    assert router.ServerRouter([server("a"), v6]).select(KEY, "[::1]:8080") is v6


def test_longest_leading_wildcard(router):
    short, long_ = server("*.com"), server("*.example.com")
    select = router.ServerRouter([server("x"), short, long_]).select
    assert select(KEY, "a.b.example.com") is long_
    assert select(KEY, "other.com") is short
    assert select(KEY, "example.com") is short
    assert select(KEY, "com") is not short


def test_dot_name_matches_the_bare_domain(router):
    dot = server(".example.com")
    star = server("*.a.example.com")
    select = router.ServerRouter([server("x"), dot, star]).select
    assert select(KEY, "example.com") is dot
    assert select(KEY, "www.example.com") is dot
    assert select(KEY, "z.a.example.com") is star
    assert select(KEY, "notexample.com") is not dot


def test_longest_trailing_wildcard(router):
    short, long_ = server("www.*"), server("www.example.*")
    select = router.ServerRouter([server("x"), short, long_]).select
    assert select(KEY, "www.example.co.uk") is long_
    assert select(KEY, "www.other.org") is short
    assert select(KEY, "www.example") is short


def test_regexes_in_config_order_and_caseless(router):
    one, two = server("~example"), server("~^www")
    select = router.ServerRouter([server("x"), one, two]).select
    assert select(KEY, "www.EXAMPLE.org") is one
    assert select(KEY, "www.test.org") is two


def test_empty_name_catches_requests_without_host(router):
    default, empty = server("a"), server("")
    select = router.ServerRouter([default, empty]).select
    assert select(KEY, None) is empty
    assert select(KEY, "b") is default
    assert router.ServerRouter([default, empty]).default(KEY) is default


def test_default_server_per_listen_key(router):
    other = ("127.0.0.1", 8080)
    a = server("a", listens=[Listen("0.0.0.0", 80), Listen("127.0.0.1", 8080)])
    b = server("b", listens=[Listen("0.0.0.0", 80, default_server=True)])
    c = server("c", listens=[Listen("127.0.0.1", 8080)])
    routes = router.ServerRouter([a, b, c])
    assert routes.select(KEY, "zzz") is b
    assert routes.select(other, "zzz") is a
    assert routes.select(other, "c") is c
    assert routes.select(other, "b") is a          # b does not listen there
    assert routes.select(KEY, "a") is a
    assert routes.listen_keys() == [KEY, other]
    assert routes.default(KEY) is b and routes.default(other) is a
    with pytest.raises(KeyError):
        routes.select(("0.0.0.0", 81), "a")
    with pytest.raises(KeyError):
        routes.default(("0.0.0.0", 81))


def test_first_definition_of_a_name_wins(router):
    one, two = server("dup.example"), server("dup.example")
    assert router.ServerRouter([one, two]).select(KEY, "dup.example") is one


def test_implementations_agree(both_routers):
    py, cy = both_routers
    rng = random.Random(8)
    names = ["a.example.com", "*.example.com", ".example.com", "www.*", "www.example.*",
             "~^w+\\.", "~com$", "_", "", "example.com"]
    hosts = ["a.example.com", "example.com", "www.example.com", "www.x", "WWW.EXAMPLE.COM.:1",
             "", None, "com", "w.com", "x.y.example.com", "www."]
    for _ in range(300):
        servers = [server(*rng.sample(names, rng.randint(0, 3))) for _ in range(rng.randint(1, 4))]
        routes = py.ServerRouter(servers), cy.ServerRouter(servers)
        for host in hosts:
            assert routes[0].select(KEY, host) is routes[1].select(KEY, host), host
