"""The upgrade tunnel (gateway/http/tunnel.py) on fake transports and a fake clock, for both
twins of the proxy path: what goes where, when it pauses, when it ends and what is logged.
The same scenarios are compared byte for byte between the twins in test_protocol_parity.py;
tests/http/test_nginx_parity_websocket.py runs them for real beside nginx."""

import importlib

import pytest

from gateway.http import connection as py_connection
from tests.http.test_protocol_parity import GET, OK, SWITCHED, UPGRADE, Harness


@pytest.fixture(params=["python", "cython"])
def harness(request, tmp_path):
    if request.param == "python":
        conn_class = py_connection.ClientConnection
    else:
        conn_class = importlib.import_module("_fastpath.proxyproto").ClientConnection
    return Harness(conn_class, tmp_path)


def writes(h, name):
    return [e[2] for e in h.events if e[0].startswith(name) and e[1] == "write"]


def happened(h, name, what):
    return [e for e in h.events if e[0].startswith(name) and e[1] == what]


async def test_bytes_go_both_ways_after_the_101(harness):
    h = harness
    await h.send(UPGRADE + b"early")
    request = writes(h, "upstream")[0]
    assert b"\r\nUpgrade: websocket\r\n" in request and b"\r\nConnection: upgrade\r\n" in request
    await h.answer(0, SWITCHED + b"hello")
    head, _, after = writes(h, "client")[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert head.endswith(b"\r\nConnection: upgrade")
    assert b"\r\nUpgrade: websocket\r\n" in head and b"Sec-WebSocket-Accept: " in head
    assert b"X-Always: yes" in head and b"X-Not-On-101" not in head    # add_header without always
    assert after == b"hello"
    assert writes(h, "upstream")[1] == b"early"      # sent before the 101, relayed after it
    await h.send(b"\x81\x05frame")
    await h.answer(0, b"\x81\x05reply")
    assert writes(h, "upstream")[-1] == b"\x81\x05frame"
    assert writes(h, "client")[-1] == b"\x81\x05reply"
    await h.upstream_eof(0)
    assert happened(h, "client", "close") and happened(h, "upstream", "close")
    assert not h.app.upstreams["single"].pool.idle      # never back in the keep-alive pool
    assert not h.app.connections
    assert h.transcript()[1].startswith("101 12 ")      # "hello" + the 7-byte reply frame


async def test_the_client_closing_ends_both(harness):
    h = harness
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    await h.client_eof()
    assert happened(h, "upstream", "close") and happened(h, "client", "close")
    assert not h.app.upstreams["single"].pool.idle


async def test_idle_limit_is_proxy_read_timeout_from_the_last_event_either_way(harness):
    h = harness
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    await h.tick(6)
    await h.send(b"ping")            # from the client: the timer starts again
    await h.tick(6)
    await h.tick(6)
    assert not happened(h, "client", "close")
    await h.answer(0, b"pong")       # from the upstream too
    await h.tick(6)
    await h.tick(6)
    assert not happened(h, "client", "close")
    await h.tick(6)                  # 12s without an event: over proxy_read_timeout 10s
    assert happened(h, "client", "close") and happened(h, "upstream", "close")


async def test_back_pressure_pauses_the_other_side(harness):
    h = harness
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    upstream = h.loop.upstreams[0][1]
    h.events.clear()
    h.transport.protocol.pause_writing()
    assert h.events == [("upstream0:9003", "pause_reading")]
    h.transport.protocol.resume_writing()
    upstream.protocol.pause_writing()
    assert h.events[1:] == [("upstream0:9003", "resume_reading"), ("client", "pause_reading")]
    await h.tick(1)
    await h.tick(1)
    assert not happened(h, "client", "close")
    await h.tick(3)                   # the upstream took nothing for proxy_send_timeout 3s
    assert happened(h, "client", "close")


async def test_a_write_side_full_at_the_switch_is_paused_from_the_start(harness):
    h = harness
    await h.send(UPGRADE)
    h.loop.upstreams[0][1].buffered = 100000
    await h.answer(0, SWITCHED)
    assert happened(h, "client", "pause_reading")


async def test_no_upgrade_asked_no_tunnel(harness):
    h = harness
    await h.send(UPGRADE)
    await h.answer(0, b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
    await h.send(GET)
    await h.answer(0, OK)            # the same upstream connection, kept alive
    assert not happened(h, "client", "set_protocol")
    assert len(writes(h, "client")) == 2


async def test_a_101_nobody_asked_for_closes_both(harness):
    h = harness
    await h.send(GET)
    await h.answer(0, SWITCHED)
    assert not happened(h, "client", "set_protocol")
    assert happened(h, "client", "close") and happened(h, "upstream", "close")
    assert not h.app.upstreams["single"].pool.idle
