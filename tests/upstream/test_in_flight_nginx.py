"""Requests in flight (least_conn, max_conns): the same choices as real nginx.

Backends hold each request until the test lets it finish, so both nginx and
our balancer see the same connection counts at every choice.
"""

import http.client
import queue
import random
import socketserver
import threading

import pytest

from gateway.config.model import Balance
from gateway.upstream import build_balancer

from .nginx_harness import Backend, Pool, assert_same

pytestmark = pytest.mark.nginx


class HoldingServer(socketserver.ThreadingTCPServer):
    """Answers its name, but only once the test sets the request's event."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, arrivals):
        super().__init__(("127.0.0.1", 0), HoldingHandler)
        self.name = name
        self.arrivals = arrivals
        self.events = []


class HoldingHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        event = threading.Event()
        self.server.events.append(event)
        self.server.arrivals.put((self.server.name, event))
        event.wait(20)
        # HTTP/1.0 without a length: nginx answers the client chunked and sends
        # the last chunk only after releasing the peer, so the client knows.
        self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\n" + self.server.name.encode())


@pytest.fixture
def holding_servers():
    arrivals = queue.Queue()
    servers = []

    def start(names):
        for name in names:
            server = HoldingServer(name, arrivals)
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            servers.append(server)
        return servers, arrivals

    try:
        yield start
    finally:
        for server in servers:
            for event in server.events:
                event.set()
            server.shutdown()
            server.server_close()


def script(seed, steps=60, most_held=7):
    """A random but fixed order of new requests ("send") and finishes (index of a held one)."""
    rng = random.Random(seed)
    held, actions = 0, []
    for _ in range(steps):
        if held and (held >= most_held or rng.random() < 0.45):
            actions.append(rng.randrange(held))
            held -= 1
        else:
            actions.append("send")
            held += 1
    return actions


CASES = {
    "least_conn 1/1/1": ("least_conn", Balance(method="least_conn"), [(1, 0)] * 3),
    "least_conn 1/2/3": ("least_conn", Balance(method="least_conn"), [(1, 0), (2, 0), (3, 0)]),
    "least_conn 5/1/2/1": ("least_conn", Balance(method="least_conn"),
                           [(5, 0), (1, 0), (2, 0), (1, 0)]),
    "least_conn max_conns": ("least_conn", Balance(method="least_conn"),
                             [(1, 2), (2, 0), (1, 0)]),
    "round_robin max_conns": ("", Balance(), [(3, 1), (1, 0), (1, 0)]),
    "hash max_conns": ("hash $request_uri", Balance(method="hash", key="$request_uri"),
                       [(1, 1), (2, 2), (1, 0)]),
    "consistent max_conns": ("hash $request_uri consistent",
                             Balance(method="hash", key="$request_uri", consistent=True),
                             [(1, 1), (2, 2), (1, 0)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_choices_with_requests_in_flight(run_nginx, holding_servers, case):
    method_line, balance, spec = CASES[case]
    servers, arrivals = holding_servers([f"s{i}" for i in range(len(spec))])
    backends = [Backend(server.name, weight=weight, max_conns=max_conns, external=True,
                        port=server.server_address[1])
                for server, (weight, max_conns) in zip(servers, spec)]
    pool = Pool("p", method_line, backends, balance=balance)
    nginx = run_nginx([pool])
    actions = script(len(case))
    # Few distinct URIs, so that hash keys repeat and meet full peers.
    paths = [f"/r{i % 5}" for i in range(len(actions))]

    theirs, held = [], []
    try:
        for action, path in zip(actions, paths):
            if action == "send":
                conn = nginx.client("p")
                conn.request("GET", path)
                name, event = arrivals.get(timeout=10)
                theirs.append(name)
                held.append((conn, event))
            else:
                conn, event = held.pop(action)
                event.set()
                response = conn.getresponse()
                response.read()
                conn.close()
    finally:
        for conn, event in held:
            event.set()
            conn.close()

    balancer = build_balancer(pool.model())
    names = pool.names_by_address()
    ours, in_flight = [], []
    for action, path in zip(actions, paths):
        if action == "send":
            peer = next(balancer.select(path))
            ours.append(names[peer.name])
            in_flight.append(peer)
        else:
            balancer.release(in_flight.pop(action), False)
    assert_same(theirs, ours, nginx)
    if balance.method == "hash":
        # Ring positions depend on the random ports, so a server may own none of the
        # five keys; what matters is that full peers made nginx move on.
        assert len(set(theirs)) >= 2
    else:
        assert len(set(theirs)) == len(spec)
