"""The compiled balancers (_fastpath.balancing) against their Python twins, step for step.

Each case builds the pure-Python balancer (gateway/upstream/balancers, the specification)
and the compiled one from the same upstream, drives both with the same script on their own
injected clocks, and compares every peer each one yields and every peer's state after
every step.
"""

import importlib
import random
import time

import pytest

from gateway._select import load_fast
from gateway.upstream import build_balancer
from gateway.upstream.balancers.base import RoundRobin as PyRoundRobin
from gateway.upstream.balancers.least_conn import LeastConn as PyLeastConn
from gateway.upstream.peer import Peer as PyPeer

from .helpers import Clock, upstream

PEER_FIELDS = PyPeer.__slots__
METHODS = ["round_robin", "least_conn"]
TWINS = {"round_robin": PyRoundRobin, "least_conn": PyLeastConn}


def compiled():
    """_fastpath.balancing; fails loudly if the extension is not built."""
    try:
        return importlib.import_module("_fastpath.balancing")
    except ImportError as exc:
        pytest.fail(f"_fastpath.balancing is not built ({exc}): run `make extensions`")


def pair(method, *servers):
    """(python, compiled) balancers of ``method`` over ``servers``, each with its own clock."""
    fast = compiled()
    classes = (TWINS[method], {"round_robin": fast.RoundRobin,
                               "least_conn": fast.LeastConn}[method])
    return [cls(upstream(*servers, method=method), now=Clock()) for cls in classes]


def state(balancer):
    """Every field of every peer, primary then backup."""
    return [tuple(getattr(peer, field) for field in PEER_FIELDS) for peer in balancer.all_peers]


class Driver:
    """Applies one scripted step to a balancer and returns what it yielded."""

    def __init__(self, balancer):
        self.balancer = balancer
        self.held = []           # peers of requests still in flight

    def tries(self, outcomes, hold=False):
        """One request: take peers from one iterator while ``outcomes`` says the try failed.

        With ``hold`` the successful try stays in flight until ``finish``."""
        names = []
        iterator = self.balancer.select()
        for failed in outcomes:
            peer = next(iterator, None)
            if peer is None:
                break
            names.append(peer.name)
            if hold and not failed:
                self.held.append(peer)
                break
            self.balancer.release(peer, failed, 0.01 * len(names), 0.02 * len(names))
            if not failed:
                break
        return names

    def finish(self, index, failed):
        """Release the held request at ``index`` (modulo the count held)."""
        if not self.held:
            return None
        peer = self.held.pop(index % len(self.held))
        self.balancer.release(peer, failed, 0.005, None)
        return peer.name


def run_script(balancer, steps):
    """Apply ``steps`` and return the transcript: what each step yielded and the state after."""
    driver = Driver(balancer)
    clock = balancer.now
    transcript = []
    for step, args in steps:
        if step == "tries":
            result = driver.tries(*args)
        elif step == "finish":
            result = driver.finish(*args)
        elif step == "advance":
            clock.advance(args)
            result = None
        else:   # "set": a field health checks or operators change (healthy, down)
            index, field, value = args
            peers = balancer.all_peers
            setattr(peers[index % len(peers)], field, value)
            result = None
        transcript.append((step, result, state(balancer)))
    return transcript


def random_steps(seed, count, peers):
    """A reproducible mix of requests with retries, in-flight holds, clock steps and flips."""
    rng = random.Random(seed)
    steps = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.55:
            outcomes = [rng.random() < 0.3 for _ in range(rng.randint(1, peers + 2))]
            steps.append(("tries", (outcomes, rng.random() < 0.35)))
        elif roll < 0.75:
            steps.append(("finish", (rng.randrange(64), rng.random() < 0.3)))
        elif roll < 0.9:
            steps.append(("advance", rng.choice([0.25, 1.0, 5.0, 10.0, 10.5, 31.0])))
        else:
            field = rng.choice(["healthy", "down"])
            value = rng.random() < (0.7 if field == "healthy" else 0.3)
            steps.append(("set", (rng.randrange(peers), field, value)))
    return steps


def assert_same(method, servers, steps):
    python, fast = pair(method, *servers)
    assert state(python) == state(fast)
    expected = run_script(python, steps)
    got = run_script(fast, steps)
    for i, (want, have) in enumerate(zip(expected, got)):
        assert have == want, f"step {i}: {steps[i]}"
    assert len(got) == len(expected)


UPSTREAMS = {
    "equal": ["a", "b", "c"],
    "weights-5-1-1": [("a", {"weight": 5}), ("b", {"weight": 1}), ("c", {"weight": 1})],
    "failures": [("a", {"weight": 4, "max_fails": 3, "fail_timeout": 10.0}),
                 ("b", {"weight": 2, "max_fails": 1, "fail_timeout": 5.0}),
                 ("c", {"max_fails": 0}), ("d", {"weight": 3, "max_fails": 2})],
    "backup": [("a", {"weight": 2}), "b", ("x", {"backup": True}),
               ("y", {"backup": True, "weight": 3})],
    "down": [("a", {"down": True}), ("b", {"weight": 3}), "c"],
    "max-conns": [("a", {"max_conns": 1}), ("b", {"weight": 3, "max_conns": 2}),
                  ("c", {"max_conns": 3}), ("z", {"backup": True, "max_conns": 1})],
    "single": ["a"],
    "single-max-conns": [("a", {"max_conns": 2})],
    "single-with-backup": ["a", ("z", {"backup": True})],
    "weights-100": [(f"p{i}", {"weight": 1 + i % 7, "max_fails": i % 3}) for i in range(100)],
    "peers-150": [f"p{i}" for i in range(150)] + [(f"b{i}", {"backup": True}) for i in range(70)],
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(UPSTREAMS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_scripts_give_the_same_peers_and_state(method, name, seed):
    servers = UPSTREAMS[name]
    assert_same(method, servers, random_steps(seed, 300, len(servers)))


@pytest.mark.parametrize("method", METHODS)
def test_smooth_weighted_sequence(method):
    steps = [("tries", ([False],))] * 21
    assert_same(method, UPSTREAMS["weights-5-1-1"], steps)
    python, _ = pair(method, *UPSTREAMS["weights-5-1-1"])
    assert [step[1] for step in run_script(python, steps)][:7] == [[n] for n in "aabacaa"]


@pytest.mark.parametrize("method", METHODS)
def test_retries_take_every_primary_then_every_backup_then_stop(method):
    steps = [("tries", ([True] * 8,))] * 3
    assert_same(method, UPSTREAMS["backup"], steps)
    _, fast = pair(method, *UPSTREAMS["backup"])
    first = run_script(fast, steps)[0][1]
    assert sorted(first[:2]) == ["a", "b"] and sorted(first[2:]) == ["x", "y"]


@pytest.mark.parametrize("method", METHODS)
def test_failed_peer_is_out_for_fail_timeout_then_gets_one_probe(method):
    servers = [(n, {"max_fails": 1, "fail_timeout": 10.0}) for n in "abc"]
    steps = ([("tries", ([True, False],))] + [("tries", ([False],))] * 6
             + [("advance", 10.0)] + [("tries", ([False],))] * 6
             + [("advance", 0.5)] + [("tries", ([False], True))] * 4
             + [("tries", ([False],))] * 3 + [("finish", (0, False))] * 4
             + [("tries", ([False],))] * 6)
    assert_same(method, servers, steps)


@pytest.mark.parametrize("method", METHODS)
def test_recovering_effective_weight(method):
    servers = [("a", {"weight": 10, "max_fails": 2}), ("b", {"weight": 5, "max_fails": 5})]
    steps = ([("tries", ([True, True, False],))] * 3 + [("advance", 11.0)]
             + [("tries", ([False],))] * 30)
    assert_same(method, servers, steps)
    _, fast = pair(method, *servers)
    run_script(fast, steps[:3])
    assert fast.peers[0].effective_weight < 10


@pytest.mark.parametrize("method", METHODS)
def test_single_peer_gets_one_try_and_no_failure_accounting(method):
    steps = [("tries", ([True, True],)), ("tries", ([False], True)), ("tries", ([False], True)),
             ("tries", ([False],)), ("finish", (0, True)), ("finish", (0, False))]
    assert_same(method, UPSTREAMS["single-max-conns"], steps)
    _, fast = pair(method, *UPSTREAMS["single-max-conns"])
    transcript = run_script(fast, steps)
    assert transcript[0][1] == ["a"]
    assert transcript[3][1] == []             # max_conns=2 reached by the two held
    assert fast.peers[0].fails == 0 and fast.peers[0].conns == 0


@pytest.mark.parametrize("method", METHODS)
def test_unhealthy_and_down_peers_are_skipped(method):
    steps = ([("set", (0, "healthy", False)), ("set", (2, "down", True))]
             + [("tries", ([False],))] * 6 + [("set", (0, "healthy", True))]
             + [("tries", ([True, True, True],))] + [("tries", ([False],))] * 6)
    assert_same(method, UPSTREAMS["equal"], steps)


def test_least_conn_prefers_the_least_loaded_while_requests_are_in_flight():
    servers = [("a", {"weight": 2}), "b", "c"]
    steps = [("tries", ([False], True))] * 8 + [("finish", (1, False))] * 3 \
        + [("tries", ([False], True))] * 4 + [("finish", (0, True))] * 9
    assert_same("least_conn", servers, steps)


# Interface details the proxy and health checks rely on ------------------------------

def test_selection_is_lazy_and_an_iterator():
    _, fast = pair("round_robin", "a", "b")
    selection = fast.select()
    assert iter(selection) is selection
    assert [p.conns for p in fast.peers] == [0, 0]    # nothing taken before the first next()
    first = next(selection)
    assert first.conns == 1
    assert next(selection).name != first.name
    assert next(selection, None) is None
    assert next(selection, None) is None               # stays exhausted


def test_compiled_peer_has_the_python_peer_interface():
    fast = compiled()
    python, compiled_balancer = pair("round_robin", ("a", {"weight": 3, "max_conns": 1}))
    py_peer, peer = python.peers[0], compiled_balancer.peers[0]
    assert isinstance(peer, fast.Peer)
    assert peer.address == py_peer.address == ("127.0.0.1", 9000)
    assert repr(peer) == repr(py_peer)
    for sample in ((0.1, 0.2), (None, 0.4), (0.3, None), (0.05, 0.05)):
        py_peer.record_times(*sample)
        peer.record_times(header_time=sample[0], response_time=sample[1])
        assert (peer.header_time, peer.response_time) == (py_peer.header_time,
                                                          py_peer.response_time)
    for conns in (0, 1):
        py_peer.conns = peer.conns = conns
        assert peer.excluded(5.0) == bool(py_peer.excluded(5.0))
    peer.healthy = False
    assert peer.healthy is False and peer.excluded(5.0)


def test_compiled_balancer_has_the_python_interface():
    up = upstream("a", ("z", {"backup": True}), method="least_conn")
    fast = compiled().LeastConn(up)
    python = PyLeastConn(up)
    for name in ("method", "uses_backup", "name", "upstream", "key_template", "single",
                 "total_weight"):
        assert getattr(fast, name) == getattr(python, name), name
    assert [p.name for p in fast.all_peers] == ["a", "z"]
    assert fast.load(fast.peers[0]) == python.load(python.peers[0]) == 0.0


def test_a_clock_swapped_later_is_used():
    python, fast = pair("round_robin", ("a", {"fail_timeout": 5.0}), "b")
    for balancer in (python, fast):
        balancer.now = Clock(50.0)
    steps = [("tries", ([True, False],)), ("advance", 6.0)] + [("tries", ([False],))] * 4
    assert run_script(fast, steps) == run_script(python, steps)
    assert fast.peers[0].checked >= 50.0


def test_default_clock_reads_the_same_clock_as_time_monotonic():
    up = upstream("a", "b")
    balancer = compiled().RoundRobin(up)
    assert balancer.now is time.monotonic
    before = time.monotonic()
    peer = next(balancer.select())
    balancer.release(peer, True)
    after = time.monotonic()
    assert before <= peer.checked == peer.accessed <= after


def test_only_primary_backups_is_a_config_error_in_both():
    from gateway.errors import ConfigError
    fast = compiled()
    for cls in (PyRoundRobin, fast.RoundRobin, fast.LeastConn):
        with pytest.raises(ConfigError, match='no servers in upstream "backend"'):
            cls(upstream(("a", {"backup": True})))


@pytest.mark.parametrize("method", METHODS + ["ip_hash", "hash", "random", "least_time"])
def test_build_balancer_uses_the_compiled_twin_unless_disabled(method):
    fast = load_fast("balancing")
    balancer = build_balancer(upstream("a", "b", method=method, key="$uri"))
    if fast is not None and method in TWINS:
        assert type(balancer) is getattr(fast, TWINS[method].__name__)
    else:
        assert type(balancer).__module__.startswith("gateway.upstream.balancers")
