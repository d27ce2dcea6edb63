"""Upstream faults, side by side with nginx: the client gets what nginx's client gets, and the
gateway keeps serving without leaking a descriptor.

One misbehaving upstream (tests/support/fault_upstream.py) acts out a fault per path: resets and
closes in the head, the body and a chunk, garbage, framing errors, stalls, a response that never
ends, two answers to one request, a keep-alive connection closed as a request is written to it.
"""

import os
import socket
import subprocess
import time

import pytest

from tests.support.processes import FaultUpstream, Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

CONFIG = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    upstream faulty {{ server 127.0.0.1:{upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 1s;
        proxy_read_timeout 1s;
        location / {{ proxy_pass http://faulty; }}
    }}
}}
"""

# Faults where the client must see what nginx's client sees (checked against nginx in the same run).
FAULTS = [
    "/reset-before-head", "/reset-mid-head", "/close-mid-head", "/reset-mid-body", "/reset-mid-chunk",
    "/bad-chunk-size", "/stall-before-head", "/stall-mid-body", "/huge-header",
]
# Framing nginx 1.22 lets through and nginx 1.23+ refuses with 502, as we do: an invalid
# Content-Length, two of them, and Content-Length beside Transfer-Encoding. Relayed, they let a
# downstream parser frame the response differently from us (response splitting).
AMBIGUOUS_FRAMING = ["/bad-length", "/two-lengths", "/length-and-chunked"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(nginx, gateway, upstream log path), both proxies in front of one fault upstream."""
    tmp = tmp_path_factory.mktemp("faults")
    log_path = tmp / "upstream.log"
    upstream = FaultUpstream(log_path)
    upstream_port = upstream.port
    started = []
    try:
        for name, kind in (("nginx", Nginx), ("gateway", Gateway)):
            folder = tmp / name
            folder.mkdir()
            port = free_port()
            started.append(kind(folder, CONFIG.format(dir=folder, upstream=upstream_port, port=port), port))
        yield started[0], started[1], log_path
    finally:
        for server in reversed(started):
            server.stop()
        upstream.stop()


def fetch(port, path, timeout=8.0):
    """What a client sees for GET path on a new connection: (status or None, framing outcome, body).

    The outcome is "complete" (the body its framing announced), "truncated" (the connection ended
    first), "close-delimited" (no length, read to the end) or "no answer" (closed before a head).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if b"\r\n\r\n" not in data:
        return None, "no answer", b""
    if not data.startswith(b"HTTP/"):
        return None, "no status line", data
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if b"content-length" in headers:
        want = int(headers[b"content-length"])
        return status, "complete" if len(body) == want else "truncated", body[:want]
    if headers.get(b"transfer-encoding") == b"chunked":
        decoded, complete = dechunk(body)
        return status, "complete" if complete else "truncated", decoded
    return status, "close-delimited", body


def dechunk(data):
    """(the decoded body, whether the terminal chunk arrived)."""
    out = b""
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return out, False
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out, False
        if size == 0:
            return out, True
        if len(rest) < size + 2:
            return out + rest[:size], False
        out += rest[:size]
        data = rest[size + 2:]


def worker_fds(gateway):
    """Open descriptors of the gateway's worker process."""
    children = subprocess.run(["pgrep", "-P", str(gateway.proc.pid)], capture_output=True, text=True)
    [worker] = children.stdout.split()
    return len(os.listdir(f"/proc/{worker}/fd"))


@pytest.mark.parametrize("path", FAULTS)
def test_the_client_sees_what_nginx_shows_it(servers, path):
    nginx, gateway, _ = servers
    expected = fetch(nginx.port, path)
    got = fetch(gateway.port, path)
    assert got[:2] == expected[:2], f"gateway {got[:2]}, nginx {expected[:2]}"
    if expected[1] == "complete" and expected[0] < 300:    # error pages differ in their signature
        assert got[2] == expected[2]
    assert fetch(gateway.port, "/ok") == (200, "complete", b"ok\n")


@pytest.mark.parametrize("path", AMBIGUOUS_FRAMING)
def test_ambiguous_framing_is_502_as_in_nginx_1_23(servers, path):
    nginx, gateway, _ = servers
    assert fetch(nginx.port, path)[0] == 200          # 1.22, the nginx this suite runs
    assert fetch(gateway.port, path)[:2] == (502, "complete")
    assert fetch(gateway.port, "/ok") == (200, "complete", b"ok\n")


def test_garbage_is_502_where_nginx_relays_it_as_http09(servers):
    # nginx takes a response without a status line for HTTP/0.9 and relays it to an HTTP/1.1
    # client as is; we answer 502, as for any malformed head (see README, differences from nginx).
    nginx, gateway, _ = servers
    assert fetch(nginx.port, "/garbage") == (None, "no status line", b"garbage, not HTTP\r\n\r\n")
    assert fetch(gateway.port, "/garbage")[:2] == (502, "complete")
    assert fetch(gateway.port, "/ok") == (200, "complete", b"ok\n")


def test_a_second_answer_to_one_request_is_never_relayed_to_the_next(servers):
    for server in servers[:2]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for path in ("/twice", "/ok", "/ok"):
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1)
                assert head.startswith(b"HTTP/1.1 200"), head
                body = b""
                while len(body) < 3:
                    body += sock.recv(3 - len(body))
                assert body == b"ok\n", (server, path)


def test_a_keepalive_connection_closed_under_a_request_is_retried(servers):
    # The first request leaves an idle upstream connection; the second is written to it and the
    # upstream closes without answering: nginx retries a cached connection once, so do we.
    nginx, gateway, _ = servers
    for server in (nginx, gateway):
        assert fetch(server.port, "/close-on-second") == (200, "complete", b"ok\n")
        assert fetch(server.port, "/close-on-second") == (200, "complete", b"ok\n")


def test_a_response_that_never_ends_is_dropped_upstream_when_the_client_leaves(servers):
    nginx, gateway, log_path = servers
    for server in (nginx, gateway):
        log_path.touch()
        before = log_path.read_text().count("endless-closed")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            received = 0
            while received < 64 * 1024:
                received += len(sock.recv(65536))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and log_path.read_text().count("endless-closed") == before:
            time.sleep(0.05)
        assert log_path.read_text().count("endless-closed") == before + 1, server


def test_faults_leak_no_descriptor(servers):
    _, gateway, _ = servers
    assert fetch(gateway.port, "/ok")[0] == 200
    before = worker_fds(gateway)
    for _ in range(3):
        for path in FAULTS + AMBIGUOUS_FRAMING + ["/garbage", "/twice", "/close-on-second"]:
            fetch(gateway.port, path)
    assert fetch(gateway.port, "/ok")[0] == 200
    # An idle keep-alive upstream connection may be cached or not: at most one more.
    after = worker_fds(gateway)
    assert after <= before + 1, (before, after)
    assert "Traceback" not in gateway.errors()
