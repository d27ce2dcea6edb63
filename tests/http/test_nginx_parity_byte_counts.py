"""Byte counts in the access log of WebSocket tunnels and of requests behind auth_request,
side by side with real nginx: $bytes_sent, $body_bytes_sent, $request_length,
$upstream_bytes_received and $upstream_bytes_sent, line for line."""

import asyncio
import socket
import time

import pytest
from websockets.asyncio.client import connect

from tests.support.processes import SIDE_BY_SIDE_HEAD, EchoBackend, WsBackend, free_port

pytestmark = pytest.mark.nginx

COUNTS = ("$status $body_bytes_sent $bytes_sent $request_length "
          "$upstream_status|$upstream_bytes_received|$upstream_bytes_sent")

WS_CONFIG = SIDE_BY_SIDE_HEAD.replace("{", "{{").replace("}", "}}") + """
http {{
    log_format counts '"$request" COUNTS';
    access_log access.log counts;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream ws {{ server 127.0.0.1:{ws}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
""".replace("COUNTS", COUNTS)

AUTH_CONFIG = SIDE_BY_SIDE_HEAD.replace("{", "{{").replace("}", "}}") + """
http {{
    log_format counts '"$request" COUNTS';
    access_log access.log counts;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /auth {{
            internal;
            proxy_pass http://127.0.0.1:{auth}/status/$http_x_want;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /auth-204 {{ internal; return 204; }}
        location /private/ {{ auth_request /auth; }}
        location /proxied/ {{ auth_request /auth; proxy_pass http://127.0.0.1:{upstream}/up/; }}
        location /returned/ {{ auth_request /auth-204; proxy_pass http://127.0.0.1:{upstream}/up/; }}
    }}
}}
""".replace("COUNTS", COUNTS)


def token_length(port) -> int:
    """The length of the Server field's value a server sends (nginx/1.22.1, gateway/0.1.0):
    byte counts are compared less that difference, once per Server field or error page."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /no-such-thing HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"server:"):
            return len(line.split(b":", 1)[1].strip())
    raise AssertionError(answer)


def normalized(line, token):
    """A log line with its sizes less the server's name, once in the head and once more in
    the body of an error page."""
    request, _, rest = line.rpartition('" ')
    status, body, sent, length, upstream = rest.split(" ")
    pages = 1 if int(status) >= 400 else 0
    return (request, status, int(body) - pages * token, int(sent) - (1 + pages) * token,
            length, upstream)


def access_lines(server, count):
    path = server.dir / "access.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            break
        time.sleep(0.05)
    return path.read_text().splitlines() if path.exists() else []


async def talk(port):
    async with connect(f"ws://127.0.0.1:{port}/echo", max_size=None, compression=None) as ws:
        for message in ("hello", b"\x00\x01\xfe\xff", "x" * 70000):
            await ws.send(message)
            await ws.recv()
        await ws.close()
    async with connect(f"ws://127.0.0.1:{port}/bye", compression=None) as ws:
        await ws.send("x")
        try:
            await ws.recv()
        except Exception:   # noqa: BLE001 - the server closes: the count is what matters
            pass


def test_tunnel_byte_counts_match_nginx(start_gateway, start_nginx):
    backend = WsBackend()
    try:
        logs = {}
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            port = free_port()
            server = start(WS_CONFIG.format(port=port, ws=backend.port), port)
            asyncio.run(talk(port))
            token = token_length(port)
            logs[name] = [normalized(line, token) for line in access_lines(server, 3)[:2]]
    finally:
        backend.stop()
    assert logs["gateway"] == logs["nginx"]
    assert logs["nginx"][0][:2] == ('"GET /echo HTTP/1.1', "101")
    # Everything relayed each way is counted: a 70000-byte message went up and came back.
    received, sent = map(int, logs["nginx"][0][5].split("|")[1:])
    assert received > 70000 and sent > 70000


def _get(port, path, want):
    request = (f"GET {path} HTTP/1.1\r\nHost: main.test\r\nX-Want: {want}\r\n"
               "User-Agent: counts\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        while sock.recv(65536):
            pass


AUTH_CASES = [("/private/f.txt", 200), ("/private/f.txt", 403), ("/private/f.txt", 401),
              ("/private/f.txt", 500), ("/proxied/p", 200), ("/proxied/p", 403),
              ("/returned/p", 200)]


def test_auth_request_byte_counts_match_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    (root / "private").mkdir(parents=True)
    (root / "private" / "f.txt").write_text("secret\n")
    logs = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        auth, upstream = EchoBackend("auth"), EchoBackend("up")
        try:
            port = free_port()
            server = start(AUTH_CONFIG.format(port=port, root=root, auth=auth.port,
                                              upstream=upstream.port), port)
            for path, want in AUTH_CASES:
                _get(port, path, want)
            token = token_length(port)
            lines = access_lines(server, len(AUTH_CASES) + 1)[:len(AUTH_CASES)]
            logs[name] = [normalized(line, token) for line in lines]
        finally:
            auth.stop()
            upstream.stop()
    assert len(logs["nginx"]) == len(AUTH_CASES)
    assert logs["gateway"] == logs["nginx"]
