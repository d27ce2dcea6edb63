"""WebSocket tunnelling side by side with real nginx, with the `websockets` library at both ends:
a real echo server upstream and a real client, through nginx's standard pattern
(map $http_upgrade $connection_upgrade; proxy_http_version 1.1; Upgrade and Connection passed on).

The same messages come back, the same close codes end it whichever side closes, the same idle
limit cuts it, the same access log lines record it, and without the two headers neither tunnels.
Memory stays bounded while a client sends faster than the upstream reads, or sends a frame far
larger than anything the gateway holds: it relays bytes and never assembles frames."""

import asyncio
import base64
import os
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.processes import SIDE_BY_SIDE_HEAD, WsBackend, free_port, tree_rss

pytestmark = pytest.mark.nginx

CONFIG = SIDE_BY_SIDE_HEAD.replace("{", "{{").replace("}", "}}") + """
http {{
    log_format tunnel '"$request" $status $body_bytes_sent $upstream_status';
    access_log access.log tunnel;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream ws {{ server 127.0.0.1:{ws}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout {timeout};
        }}
        location /plain/ {{
            # Without the two headers the upstream never hears of an upgrade: no tunnel.
            proxy_pass http://ws/;
            proxy_http_version 1.1;
        }}
    }}
}}
"""

TIMEOUT = 2.0


@pytest.fixture
def ws_backend():
    server = WsBackend()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def both(start_gateway, start_nginx, ws_backend):
    """Start nginx and the gateway on the same config; {name: (server, port)}."""
    started = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        started[name] = (start(CONFIG.format(port=port, ws=ws_backend.port, timeout="2s"), port), port)
    return started


def access_lines(server):
    path = server.dir / "access.log"
    for _ in range(40):                       # the gateway writes its log at the next sweep
        if path.exists() and path.read_text().count("\n"):
            break
        time.sleep(0.1)
    return path.read_text().splitlines() if path.exists() else []


async def conversation(port):
    """Messages both ways, then a close from the client and one from the server."""
    seen = []
    async with connect(f"ws://127.0.0.1:{port}/echo", max_size=None, compression=None) as ws:
        for message in ("hello", b"\x00\x01\xfe\xff", "é" * 1000, os.urandom(900 * 1024)):
            await ws.send(message)
            answer = await ws.recv()
            seen.append(answer == message)
        await ws.close()
    seen.append(("client closed", ws.close_code))
    async with connect(f"ws://127.0.0.1:{port}/bye") as ws:
        await ws.send("x")
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
    seen.append(("server closed", ws.close_code, ws.close_reason))
    try:
        async with connect(f"ws://127.0.0.1:{port}/plain/echo"):
            seen.append("tunnelled without the headers")
    except InvalidStatus as exc:
        seen.append(("refused", exc.response.status_code))
    return seen


def test_messages_and_closes_match_nginx(both):
    results = {name: asyncio.run(conversation(port)) for name, (_, port) in both.items()}
    assert results["gateway"] == results["nginx"]
    assert results["nginx"][:4] == [True] * 4
    assert results["nginx"][4:6] == [("client closed", 1000), ("server closed", 4000, "bye")]
    assert results["nginx"][6][0] == "refused"
    logs = {name: access_lines(server) for name, (server, _) in both.items()}
    assert logs["gateway"] == logs["nginx"]
    assert logs["nginx"][0].startswith('"GET /echo HTTP/1.1" 101 ')


async def idle_then_busy(port):
    """Idle past proxy_read_timeout: cut. Busy longer than it, one way only: kept."""
    started = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        try:
            await asyncio.wait_for(ws.recv(), 30)
            outcome = "message"
        except ConnectionClosed:
            outcome = ("cut", ws.close_code, time.monotonic() - started >= TIMEOUT)
    async with connect(f"ws://127.0.0.1:{port}/sink") as ws:
        # Only the client speaks (the sink never answers): every event re-arms nginx's timer.
        for i in range(int(3 * TIMEOUT / 0.25)):
            await ws.send(f"{i}")
            await asyncio.sleep(0.25)
        await ws.send("still there")
        busy = ws.close_code
    return outcome, busy


def test_idle_limit_matches_nginx(both):
    results = {name: asyncio.run(idle_then_busy(port)) for name, (_, port) in both.items()}
    assert results["gateway"] == results["nginx"] == (("cut", 1006, True), None)
    for server, _ in both.values():
        assert "upstream timed out (110: Connection timed out) while proxying upgraded connection" \
            in (server.dir / "error.log").read_text()


HANDSHAKE = ("GET /stall HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n")


def flood(port, limit=256 << 20):
    """Upgrade by hand, then write until the path stops taking bytes; how many it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(HANDSHAKE.format(key=key).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock.setblocking(False)
        chunk = b"\x82\x7f" + (1 << 40).to_bytes(8, "big") + b"\0" * (1 << 20)   # a 1 TiB frame
        pushed, last_progress = 0, time.monotonic()
        while pushed < limit and time.monotonic() - last_progress < 1.0:
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            pushed += sent
            last_progress = time.monotonic()
        return pushed


@pytest.mark.parametrize("name", ["gateway", "nginx"])
def test_a_sender_faster_than_the_receiver_does_not_grow_memory(both, name):
    server, port = both[name]
    before = tree_rss(server.proc.pid)
    pushed = flood(port)
    grown = tree_rss(server.proc.pid) - before
    # The upstream reads nothing: only the socket buffers of the path and one transport buffer
    # per direction may fill. Without back-pressure all 256 MiB would be read into memory.
    # The bound leaves room for the allocator's heap: the pure-Python twins once grew 24 MiB
    # under load (freed 256 KiB reads kept by malloc, most likely), far from 256 MiB.
    assert pushed < 64 << 20, pushed
    assert grown < 32 << 20, grown


async def oversized(port):
    async with connect(f"ws://127.0.0.1:{port}/echo", max_size=None, compression=None) as ws:
        try:
            await ws.send(b"\0" * (64 << 20))
            await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code


def test_an_oversized_frame_is_refused_upstream_and_not_held(both):
    codes, growth = {}, {}
    for name, (server, port) in both.items():
        before = tree_rss(server.proc.pid)
        codes[name] = asyncio.run(oversized(port))
        growth[name] = tree_rss(server.proc.pid) - before
    # The upstream (max_size 1 MiB) says 1009 "message too big" through both.
    assert codes["gateway"] == codes["nginx"] == 1009
    assert growth["gateway"] < 16 << 20, growth


def test_ws_backend_paths_are_what_the_tests_think(ws_backend):
    """The fixture itself: /echo answers, /stall reads nothing (its socket fills)."""
    async def check():
        async with connect(f"ws://127.0.0.1:{ws_backend.port}/echo") as ws:
            await ws.send("a")
            assert await ws.recv() == "a"
    asyncio.run(check())
    assert flood(ws_backend.port, limit=64 << 20) < 64 << 20




TLS_CONFIG = SIDE_BY_SIDE_HEAD.replace("{", "{{").replace("}", "}}") + """
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{ws};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
"""


def test_wss_through_a_tls_listener(start_gateway, ws_backend, tmp_path):
    """The tunnel takes over a TLS transport as well: wss:// in front of a plain ws:// upstream."""
    from tests.support.certs import Certificates
    certs = Certificates(tmp_path / "certs")
    pair = certs.issue("site", "localhost")
    port = free_port()
    start_gateway(TLS_CONFIG.format(port=port, cert=pair.cert, key=pair.key, ws=ws_backend.port),
                  port)

    async def talk():
        async with connect(f"wss://localhost:{port}/echo", ssl=certs.client_context(),
                           max_size=None) as ws:
            replies = []
            for message in ("over tls", os.urandom(300 * 1024)):
                await ws.send(message)
                replies.append(await ws.recv() == message)
        return replies, ws.close_code
    assert asyncio.run(talk()) == ([True, True], 1000)
