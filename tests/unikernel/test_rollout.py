"""Image roll-outs, the immutable way: a running pool never changes its image, restarts included;
a reload boots the new image in new workers beside the old, drains the old, and fails no request."""

import hashlib
import os
import signal

import pytest

from tests.unikernel.test_gateway_faults import load  # noqa: F401 (a fixture)
from tests.unikernel.test_gateway_services import (  # noqa: F401 (uk_gateway is a fixture)
    instances, qemu_alive, request, signal_qemu, uk_gateway, wait_for)

pytestmark = pytest.mark.qemu


def config(port, image):
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    unikernel echo {{ image {image}; instances 2 2; transport socketpair;
                     setting ping_interval 100ms; setting hang_timeout 1s; }}
    server {{
        listen 127.0.0.1:{port};
        location /echo/ {{ unikernel_pass echo; }}
    }}
}}
"""


@pytest.fixture
def versions(images, tmp_path):
    """Two builds of the echo image at two paths: v2 has bytes appended after the ELF's
    segments, which changes the file and not the guest."""
    original = (images / "echo.elf").read_bytes()
    paths = []
    for name, data in (("v1", original), ("v2", original + b"\0" * 64)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "echo.elf").write_bytes(data)
        paths.append(folder / "echo.elf")
    return paths


def booted_from(pid):
    """sha256 of the kernel file a QEMU process was started with."""
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = fh.read().split(b"\0")
    with open(argv[argv.index(b"-kernel") + 1], "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rolled_to(gw, image_digest, old_pids):
    """The ready instances, once every one boots image_digest and no old QEMU is left."""
    found = [i for i in instances(gw, "echo") if i["state"] == "ready"]
    # An old worker still exiting may list QEMUs it killed (zombies until reaped) as ready.
    if len(found) != 2 or any(qemu_alive(pid) for pid in old_pids) or not all(
            qemu_alive(i["pid"]) for i in found):
        return None
    return found if all(booted_from(i["pid"]) == image_digest for i in found) else None


def test_an_image_rebuilt_in_place_reaches_only_new_workers(uk_gateway, versions):
    v1, v2 = versions
    gw = uk_gateway(lambda port: config(port, v1))
    before = instances(gw, "echo")
    old = digest(v1)
    assert {booted_from(i["pid"]) for i in before} == {old}
    v1.write_bytes(v2.read_bytes())                     # rebuilt in place
    # A restart stays on the pool's own copy: the pool never mixes two builds.
    signal_qemu(before[0]["pid"], signal.SIGKILL)
    replaced = wait_for(lambda: [i for i in instances(gw, "echo") if i["name"] == before[0]["name"]
                                 and i["state"] == "ready" and i["pid"] != before[0]["pid"]],
                        what="the restart")[0]
    assert booted_from(replaced["pid"]) == old
    # A reload is the upgrade: new workers boot the rebuilt file, the old ones go.
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_for(lambda: rolled_to(gw, digest(v1), [replaced["pid"], before[1]["pid"]]), 30, "the roll-out")
    assert request(gw.port, "GET", "/echo/after")[::2] == (200, b"/after")


def test_a_reload_that_changes_the_image_fails_no_request(uk_gateway, load, versions):
    v1, v2 = versions
    gw = uk_gateway(lambda port: config(port, v1))
    old_pids = [i["pid"] for i in instances(gw, "echo")]
    clients = load(gw.port, clients=4, path="/echo/")
    clients.wait_done(100)
    gw.conf.write_text(config(gw.port, v2))
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_for(lambda: rolled_to(gw, digest(v2), old_pids), 30, "the roll-out to v2")
    clients.wait_done(100)
    assert clients.stop() == []


def test_a_reload_with_a_missing_image_keeps_the_old_pool_serving(uk_gateway, versions, tmp_path):
    v1, _ = versions
    gw = uk_gateway(lambda port: config(port, v1))
    pids = sorted(i["pid"] for i in instances(gw, "echo"))
    gw.conf.write_text(config(gw.port, tmp_path / "missing" / "echo.elf"))
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_for(lambda: "missing/echo.elf" in gw.errors(), 30, "the reason in the error log")
    assert "make -C unikernels" in gw.errors()
    assert request(gw.port, "GET", "/echo/still")[::2] == (200, b"/still")
    assert sorted(i["pid"] for i in instances(gw, "echo")) == pids
