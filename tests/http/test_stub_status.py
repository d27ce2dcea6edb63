"""stub_status side by side with real nginx: the same text for the same sequence of connections and
requests, and counts that add up over several worker processes and across a reload."""

import http.client
import signal
import socket
import time

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

CONFIG = """
worker_processes {workers};
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location = /basic_status {{ stub_status; }}
        location / {{ return 200 "hello"; }}
    }}
}}
"""

# Our workers publish their counts every 0.25 s; the figures of another worker may be that old.
PUBLISH = 0.6


def status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/basic_status")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), body


def keep_alive_client(port):
    """A connection that made one request and now waits (nginx's "Waiting")."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).endswith(b"hello")
    return sock


def scenario(port):
    """Six single requests, two idle keep-alive clients, one client half-way through a head."""
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello"
        conn.close()
    idle = [keep_alive_client(port) for _ in range(2)]
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET / HTTP/1.1\r\nHo")
    time.sleep(PUBLISH)
    result = status(port)
    for sock in idle + [partial]:
        sock.close()
    return result


def test_text_matches_nginx(start_gateway, start_nginx):
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(workers=1, port=port), port)
        answers[name] = scenario(port)
    assert answers["gateway"] == answers["nginx"]
    code, ctype, body = answers["nginx"]
    assert (code, ctype) == (200, "text/plain")
    # accepts: the 10 connections, and the harness's probe of the port (a connection, no request).
    assert body == (b"Active connections: 4 \nserver accepts handled requests\n 11 11 10 \n"
                    b"Reading: 1 Writing: 1 Waiting: 2 \n")


def test_counts_add_up_over_workers_and_reloads(start_gateway):
    port = free_port()
    gateway = start_gateway(CONFIG.format(workers=2, port=port), port)
    for _ in range(40):         # new connections: the kernel spreads them over both workers
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
    time.sleep(PUBLISH)
    accepts, handled, requests = map(int, status(port)[2].split(b"\n")[2].split())
    # 40 requests and this one; accepts also counts the harness's probe of the port.
    assert (requests, handled) == (41, accepts) and accepts >= 41
    # A reload replaces both workers; what the old ones counted is kept.
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while gateway.errors().count("start worker processes") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(PUBLISH + 1.0)
    assert status(port)[2].split(b"\n")[2] == b" %d %d 42 " % (accepts + 1, accepts + 1)
