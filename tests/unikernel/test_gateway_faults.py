"""Fault injection and scaling under a steady stream of requests through the gateway: none may fail."""

import http.client
import re
import signal
import socket
import threading
import time

import pytest

from tests.unikernel.test_gateway_services import (  # noqa: F401 (uk_gateway is a fixture)
    TRANSPORTS, gateway_config, instances, qemu_alive, signal_qemu, status, uk_gateway, wait_for)

pytestmark = pytest.mark.qemu


class Load:
    """Client threads sending GETs on keep-alive connections; records every failure."""

    def __init__(self, port, clients=4, path="/echo/"):
        self.port = port
        self.path = path
        self.done = 0
        self.failures = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, n):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        i = 0
        while not self._stop.is_set():
            i += 1
            path = f"{self.path}c{n}r{i}"
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and body == path[len(self.path) - 1:].encode()
                error = None if ok else f"{resp.status} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                error = repr(exc)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            with self._lock:
                self.done += 1
                if error:
                    self.failures.append(f"{path}: {error}")
        conn.close()

    def wait_done(self, count, timeout=20.0):
        """Wait until `count` more requests have been answered."""
        target = self.done + count
        wait_for(lambda: self.done >= target, timeout, f"{count} more requests")

    def stop(self):
        """Stop the clients; the failures seen."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.failures


@pytest.fixture
def load():
    """load(port, **kw) -> a running Load, stopped at teardown."""
    started = []

    def start(port, **kw):
        started.append(Load(port, **kw))
        return started[-1]
    try:
        yield start
    finally:
        for item in started:
            item.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["kill", "hang", "crash"])
def test_a_failing_instance_is_replaced_and_no_request_fails(uk_gateway, load, transport, fault):
    gw = uk_gateway(lambda port: gateway_config(port, transport))
    victim = instances(gw, "echo")[0]
    [paused] = status(gw)["echo"]["paused"]
    clients = load(gw.port)
    clients.wait_done(200)
    # kill -9; SIGSTOP (the worker hangs: no more ping answers); SIGSEGV (QEMU crashes).
    signal_qemu(victim["pid"], {"kill": signal.SIGKILL, "hang": signal.SIGSTOP, "crash": signal.SIGSEGV}[fault])
    replaced = wait_for(lambda: [i for i in instances(gw, "echo") if i["name"] == victim["name"]
                                 and i["state"] == "ready" and i["pid"] != victim["pid"]],
                        what="the instance restarted")[0]
    assert replaced["restarts"] == 1
    # The pool's paused QEMU took over, wired to its own link (test_prestart.py has the rest).
    assert (replaced["pid"], replaced["tap"]) == (paused["pid"], paused["tap"])
    expected = {"kill": "killed by signal SIGKILL", "crash": "killed by signal SIGSEGV",
                "hang": "no answer to health pings"}[fault]
    assert expected in replaced["last_exit"]
    assert not qemu_alive(victim["pid"])
    clients.wait_done(200)
    assert clients.stop() == []
    assert f'unikernel "{victim["name"]}" (pid {victim["pid"]})' in gw.errors()


def test_a_burst_grows_the_pool_and_quiet_shrinks_it(uk_gateway, load):
    scaling = ("setting scale_interval 100ms; setting scale_up_load 1; setting scale_up_ticks 2; "
               "setting scale_down_idle 1s; setting max_inflight 2;")
    pools = f"unikernel burst {{ image echo; instances 1 3; transport socketpair; {scaling} }}"
    gw = uk_gateway(lambda port: gateway_config(port, "socketpair", pools=pools,
                                                locations="location /burst/ { unikernel_pass burst; }"))
    assert len(instances(gw, "burst")) == 1
    clients = load(gw.port, clients=12, path="/burst/")
    grown = wait_for(lambda: (lambda found: found if len([i for i in found if i["state"] == "ready"]) == 3
                              else None)(instances(gw, "burst")), what="the pool grown to 3")
    clients.wait_done(300)
    assert clients.stop() == []
    # Quiet: back to MIN, the retired instances drained and stopped.
    shrunk = wait_for(lambda: (lambda found: found if len(found) == 1 else None)(instances(gw, "burst")),
                      what="the pool shrunk to 1")
    assert shrunk[0]["state"] == "ready"
    gone = [i["pid"] for i in grown if i["pid"] != shrunk[0]["pid"]]
    wait_for(lambda: not [pid for pid in gone if qemu_alive(pid)], 5, "retired QEMUs gone")
    assert "scaled up to 3 instances" in gw.errors() and "scaled down to 1 instances" in gw.errors()


def test_an_instance_that_does_not_answer_in_time_gives_504(uk_gateway):
    # The hang is not detected within the request timeout here, so the client gets nginx's 504.
    slow = "setting request_timeout 1s; setting hang_timeout 60s;"
    pools = f"unikernel lone {{ image echo; transport socketpair; {slow} }}"
    gw = uk_gateway(lambda port: gateway_config(port, "socketpair", pools=pools,
                                                locations="location /lone/ { unikernel_pass lone; }"))
    victim = instances(gw, "lone")[0]
    signal_qemu(victim["pid"], signal.SIGSTOP)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/lone/x")
        resp = conn.getresponse()
        assert (resp.status, b"504 Gateway Time-out" in resp.read()) == (504, True)
        conn.close()
    finally:
        signal_qemu(victim["pid"], signal.SIGCONT)
    assert 'unikernel "lone" timed out after 1s' in gw.errors()
    # The worker answers again once it runs: it was never restarted.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/lone/y")
    assert conn.getresponse().read() == b"/y"
    assert instances(gw, "lone")[0]["restarts"] == 0


def test_a_client_that_leaves_mid_request_is_logged_499_and_forgotten(uk_gateway):
    slow = "setting hang_timeout 60s;"
    pools = f"unikernel lone {{ image echo; transport socketpair; {slow} }}"
    gw = uk_gateway(lambda port: gateway_config(
        port, "socketpair", pools=pools,
        locations="location /lone/ { unikernel_pass lone; access_log access.log; }"))
    victim = instances(gw, "lone")[0]
    signal_qemu(victim["pid"], signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(b"GET /lone/gone HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
        wait_for(lambda: (gw.dir / "access.log").exists() and " 499 " in (gw.dir / "access.log").read_text(),
                 5, "the 499 in the access log")
    finally:
        signal_qemu(victim["pid"], signal.SIGCONT)
    # The late reply to the abandoned request is dropped; the next request is answered normally.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/lone/next")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"/next")
    assert "Traceback" not in gw.errors()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_pool_grows_and_restarts_while_the_worker_holds_over_1024_descriptors(uk_gateway, load, transport):
    # select() cannot watch a descriptor numbered 1024 or more. An instance added while 1,100 client
    # connections are open gets such descriptors (its link, its QEMU's pidfd), and must still be
    # supervised: started, and restarted when killed.
    scaling = ("setting scale_interval 100ms; setting scale_up_load 1; setting scale_up_ticks 2; "
               "setting scale_down_idle 30s; setting max_inflight 2;")
    pools = f"unikernel burst {{ image echo; instances 1 2; transport {transport}; {scaling} }}"
    gw = uk_gateway(lambda port: gateway_config(
        port, transport, pools=pools, locations="location /burst/ { unikernel_pass burst; }").replace(
            "worker_connections 256", "worker_connections 4096"))
    first = instances(gw, "burst")[0]
    held = []
    try:
        for _ in range(1100):
            held.append(socket.create_connection(("127.0.0.1", gw.port), timeout=10))
        assert _get(held[-1], "/burst/held") == (200, b"/held")
        clients = load(gw.port, clients=12, path="/burst/")
        added = wait_for(lambda: [i for i in instances(gw, "burst") if i["name"] != first["name"]
                                  and i["state"] == "ready"], what="an instance added")[0]
        signal_qemu(added["pid"], signal.SIGKILL)
        wait_for(lambda: [i for i in instances(gw, "burst") if i["name"] == added["name"]
                          and i["state"] == "ready" and i["pid"] != added["pid"]], what="its restart")
        clients.wait_done(200)
        assert clients.stop() == []
    finally:
        for sock in held:
            sock.close()
    assert "[alert]" not in gw.errors()

def _get(sock, path):
    """(status, body) of GET path on a held keep-alive connection."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, resp.read()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_spare_takes_over_from_a_killed_instance_and_no_request_fails(uk_gateway, load, transport):
    pools = f"unikernel standby {{ image echo; instances 1; spares 1; transport {transport}; }}"
    gw = uk_gateway(lambda port: gateway_config(port, transport, pools=pools,
                                                locations="location /standby/ { unikernel_pass standby; }"))
    # Read until both are listed: the status file is rewritten as instances change state.
    serving, spare = wait_for(lambda: (lambda found: found if [i["state"] for i in found]
                                       == ["ready", "spare"] else None)(
        sorted(instances(gw, "standby"), key=lambda i: i["state"])),
        what="the serving instance and its spare")
    clients = load(gw.port, path="/standby/")
    clients.wait_done(200)
    signal_qemu(serving["pid"], signal.SIGKILL)
    swapped = wait_for(lambda: (lambda found: found if [i["state"] for i in found] == ["spare", "ready"]
                                else None)(sorted(instances(gw, "standby"), key=lambda i: i["name"])),
                       what="the killed instance back as the spare")
    by_name = {i["name"]: i for i in swapped}
    assert by_name[spare["name"]]["state"] == "ready" and by_name[spare["name"]]["served"] > 0
    assert by_name[serving["name"]]["restarts"] == 1 and by_name[serving["name"]]["pid"] != serving["pid"]
    clients.wait_done(200)
    assert clients.stop() == []
    errors = gw.errors()
    assert f'unikernel "{spare["name"]}" (pid {spare["pid"]}) takes over from "{serving["name"]}"' in errors
    assert not re.search(r"worker process \d+ exited", errors), errors   # ours never died


def test_a_burst_puts_the_spare_in_service_and_boots_another(uk_gateway, load):
    scaling = ("setting scale_interval 100ms; setting scale_up_load 1; setting scale_up_ticks 2; "
               "setting scale_down_idle 30s; setting max_inflight 2;")
    pools = f"unikernel burst {{ image echo; instances 1 2; spares 1; transport socketpair; {scaling} }}"
    gw = uk_gateway(lambda port: gateway_config(port, "socketpair", pools=pools,
                                                locations="location /burst/ { unikernel_pass burst; }"))
    spare = [i for i in instances(gw, "burst") if i["state"] == "spare"][0]
    clients = load(gw.port, clients=12, path="/burst/")
    grown = wait_for(lambda: (lambda found: found if sorted(i["state"] for i in found)
                              == ["ready", "ready", "spare"] else None)(instances(gw, "burst")),
                     what="two serving instances and a new spare")
    clients.wait_done(200)
    assert clients.stop() == []
    by_name = {i["name"]: i for i in grown}
    assert by_name[spare["name"]]["state"] == "ready" and by_name[spare["name"]]["pid"] == spare["pid"]
    assert "scaled up to 2 instances" in gw.errors()
