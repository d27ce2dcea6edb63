"""Paused QEMUs (`prestart N`) through the gateway as a real process: who takes them, what replaces them,
and that none is left behind. Judged by pids and taps in the status file, never by timing."""

import os
import signal
import subprocess

import pytest

from tests.unikernel.test_gateway_faults import load  # noqa: F401 (a fixture)
from tests.unikernel.test_gateway_services import (  # noqa: F401 (uk_gateway is a fixture)
    TRANSPORTS, qemu_alive, qemu_pids, request, signal_qemu, status, taps, uk_gateway, wait_for)

pytestmark = pytest.mark.qemu

SCALING = ("setting scale_interval 100ms; setting scale_up_load 1; setting scale_up_ticks 2; "
           "setting scale_down_idle 30s; setting max_inflight 2;")


def config(port, pool):
    """One worker, one pool named solo on /solo/."""
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    unikernel solo {{ image echo; {pool} setting ping_interval 100ms; setting hang_timeout 1s; }}
    server {{
        listen 127.0.0.1:{port};
        location /solo/ {{ unikernel_pass solo; }}
    }}
}}
"""


def pool(gw):
    """The solo pool's status."""
    return status(gw)["solo"]


def paused_ready(gw, other_than=()):
    """The pool's one paused QEMU once it has loaded (and is none of other_than), else None."""
    found = pool(gw)["paused"]
    if len(found) == 1 and found[0]["state"] == "paused" and found[0]["pid"] not in other_than \
            and qemu_alive(found[0]["pid"]):
        return found[0]
    return None


def tap_exists(name):
    return f" {name}:" in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_killed_instance_resumes_the_paused_qemu_and_no_request_fails(uk_gateway, load, transport):
    gw = uk_gateway(lambda port: config(port, f"instances 1; transport {transport};"))
    [victim] = pool(gw)["instances"]
    paused = paused_ready(gw)
    assert paused and paused["pid"] != victim["pid"]
    assert (paused["tap"] is None) == (transport == "socketpair")
    assert transport == "socketpair" or paused["tap"] != victim["tap"]
    clients = load(gw.port, path="/solo/")
    clients.wait_done(100)
    signal_qemu(victim["pid"], signal.SIGKILL)
    # The one instance is back on the paused QEMU, and on its link: the requests sent meanwhile
    # waited in the queue (or were retried) and none failed.
    back = wait_for(lambda: [i for i in pool(gw)["instances"] if i["state"] == "ready"
                             and i["pid"] != victim["pid"]], what="the instance back")[0]
    assert (back["name"], back["pid"], back["tap"], back["restarts"]) == (
        victim["name"], paused["pid"], paused["tap"], 1)
    clients.wait_done(100)
    assert clients.stop() == []
    # Another paused QEMU stands by, on the link the instance left (its tap kept, the dead QEMU's gone).
    again = wait_for(lambda: paused_ready(gw, (victim["pid"], paused["pid"])), what="another paused QEMU")
    assert again["tap"] == victim["tap"]
    if transport == "tap":
        assert tap_exists(victim["tap"]) and tap_exists(paused["tap"])
    assert not qemu_alive(victim["pid"])
    errors = gw.errors()
    assert f'unikernel "{victim["name"]}" resumed a paused QEMU, pid {paused["pid"]}' in errors
    assert "Traceback" not in errors and "refused" not in errors


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_without_prestart_a_restart_starts_qemu_on_the_same_link(uk_gateway, transport):
    gw = uk_gateway(lambda port: config(port, f"instances 1; prestart 0; transport {transport};"))
    assert pool(gw)["paused"] == []
    [victim] = pool(gw)["instances"]
    signal_qemu(victim["pid"], signal.SIGKILL)
    back = wait_for(lambda: [i for i in pool(gw)["instances"] if i["state"] == "ready"
                             and i["pid"] != victim["pid"]], what="the instance back")[0]
    assert back["tap"] == victim["tap"] and back["restarts"] == 1
    assert request(gw.port, "GET", "/solo/cold")[::2] == (200, b"/cold")
    assert "resumed a paused QEMU" not in gw.errors()
    assert pool(gw)["paused"] == []


def test_growth_resumes_the_paused_qemu_and_starts_another(uk_gateway, load):
    gw = uk_gateway(lambda port: config(port, f"instances 1 2; transport socketpair; {SCALING}"))
    [first] = pool(gw)["instances"]
    paused = paused_ready(gw)
    clients = load(gw.port, clients=12, path="/solo/")
    added = wait_for(lambda: [i for i in pool(gw)["instances"] if i["name"] != first["name"]
                              and i["state"] == "ready"], what="an instance added")[0]
    assert added["pid"] == paused["pid"]
    again = wait_for(lambda: paused_ready(gw, (paused["pid"],)), what="another paused QEMU")
    assert again["pid"] not in (first["pid"], added["pid"])
    clients.wait_done(200)
    assert clients.stop() == []
    assert "scaled up to 2 instances" in gw.errors()


def test_a_spare_put_in_service_is_replaced_from_the_paused_qemu(uk_gateway, load):
    gw = uk_gateway(lambda port: config(port, f"instances 1 2; spares 1; transport socketpair; {SCALING}"))
    paused = paused_ready(gw)
    clients = load(gw.port, clients=12, path="/solo/")
    # The spare goes in service; the new spare is the resumed paused QEMU.
    grown = wait_for(lambda: (lambda found: found if sorted(i["state"] for i in found)
                              == ["ready", "ready", "spare"] else None)(pool(gw)["instances"]),
                     what="two serving instances and a new spare")
    [spare] = [i for i in grown if i["state"] == "spare"]
    assert spare["pid"] == paused["pid"]
    wait_for(lambda: paused_ready(gw, (paused["pid"],)), what="another paused QEMU")
    clients.wait_done(100)
    assert clients.stop() == []


def test_a_paused_qemu_that_dies_is_replaced(uk_gateway):
    gw = uk_gateway(lambda port: config(port, "instances 1; transport socketpair;"))
    paused = paused_ready(gw)
    signal_qemu(paused["pid"], signal.SIGKILL)
    again = wait_for(lambda: paused_ready(gw, (paused["pid"],)), what="a new paused QEMU")
    assert again["restarts"] == 1 and "killed by signal SIGKILL" in again["last_exit"]
    assert f'paused QEMU (pid {paused["pid"]}) killed by signal SIGKILL' in gw.errors()
    # The replacement is the one a restart resumes.
    [inst] = pool(gw)["instances"]
    signal_qemu(inst["pid"], signal.SIGKILL)
    wait_for(lambda: [i for i in pool(gw)["instances"] if i["state"] == "ready" and i["pid"] == again["pid"]],
             what="the instance on the new paused QEMU")
    assert request(gw.port, "GET", "/solo/x")[::2] == (200, b"/x")


def test_a_stopped_paused_qemu_costs_a_boot_timeout_not_the_instance(uk_gateway):
    gw = uk_gateway(lambda port: config(port, "instances 1; transport socketpair; setting boot_timeout 1s;"))
    paused = paused_ready(gw)
    [inst] = pool(gw)["instances"]
    signal_qemu(paused["pid"], signal.SIGSTOP)
    signal_qemu(inst["pid"], signal.SIGKILL)
    # The restart resumes the stopped QEMU, which never answers: killed after boot_timeout, the
    # instance starts once more and serves.
    back = wait_for(lambda: [i for i in pool(gw)["instances"] if i["state"] == "ready"
                             and i["pid"] not in (inst["pid"], paused["pid"])], what="the instance back")[0]
    assert back["restarts"] == 2 and "no answer to health pings" in back["last_exit"]
    assert not qemu_alive(paused["pid"])
    assert request(gw.port, "GET", "/solo/x")[::2] == (200, b"/x")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reload_and_stop_leave_no_qemu_and_no_tap(uk_gateway, transport):
    gw = uk_gateway(lambda port: config(port, f"instances 2; spares 1; transport {transport};"))
    old_pids, old_taps = qemu_pids(gw), taps(gw)
    assert len(old_pids) == 4 and len(old_taps) == (4 if transport == "tap" else 0)
    os.kill(gw.proc.pid, signal.SIGHUP)
    # New workers with their own instances and paused QEMU; the old worker's all gone, taps too.
    wait_for(lambda: (lambda p: p and not set(i["pid"] for i in p["instances"] + p["paused"]) & old_pids
                      and paused_ready(gw))(status(gw).get("solo")), 30, "the new worker's pool")
    wait_for(lambda: not [pid for pid in old_pids if qemu_alive(pid)], 10, "the old QEMUs gone")
    wait_for(lambda: not [name for name in old_taps if tap_exists(name)], 10, "the old taps gone")
    assert request(gw.port, "GET", "/solo/after")[::2] == (200, b"/after")
    pids, names = qemu_pids(gw) - old_pids, taps(gw) - old_taps
    assert len(pids) == 4 and all(qemu_alive(pid) for pid in pids)
    gw.stop()
    assert gw.proc.returncode == 0
    assert not [pid for pid in pids if qemu_alive(pid)]
    assert not [name for name in names if tap_exists(name)]
