"""The tap transport: a real tap with no address and IPv6 off, an AF_PACKET socket, removed on close."""

import os
import random
import secrets
import subprocess

import pytest

from gateway.errors import LaunchFailed
from gateway.unikernel.link import TapLink
from gateway.unikernel.wire import Op

pytestmark = pytest.mark.qemu


def _tap_or_skip():
    name = "uk" + secrets.token_hex(4)
    try:
        return TapLink(name)
    except LaunchFailed as exc:
        if os.geteuid() != 0:
            pytest.skip(f"taps need CAP_NET_ADMIN (running as uid {os.geteuid()}): {exc}")
        raise


def test_echo_over_a_tap(boot):
    link = _tap_or_skip()
    name = link.name
    worker = boot("echo", link=link)       # from here on, boot's teardown kills QEMU and closes the link
    assert os.path.exists(f"/sys/class/net/{name}")
    addrs = subprocess.run(["ip", "-o", "addr", "show", "dev", name], capture_output=True, text=True).stdout
    assert addrs.strip() == "", addrs          # no IPv4, and no IPv6 link-local either
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6") as fh:
        assert fh.read().strip() == "1"
    assert worker.request(Op.ECHO, b"through the tap").payload == b"through the tap"
    payload = random.Random(1).randbytes(1 << 20)
    assert worker.request(Op.ECHO, payload).payload == payload
    assert worker.request(Op.PING).payload == b"echo 1"


def test_tap_removed_when_closed_and_qemu_gone(boot):
    link = _tap_or_skip()
    name = link.name
    worker = boot("echo", link=link)
    assert worker.request(Op.ECHO, b"x").payload == b"x"
    worker.stop()
    assert not os.path.exists(f"/sys/class/net/{name}")


def test_bad_tap_name_is_a_clear_error():
    with pytest.raises(LaunchFailed, match="longer than 15 bytes"):
        TapLink("x" * 16)
