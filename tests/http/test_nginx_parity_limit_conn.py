"""limit_conn side by side with real nginx: requests held by a slow upstream count against the
key; the same ones are refused (status, $limit_conn_status), the count is given back when a
request ends (an idle keep-alive connection holds nothing), dry run, and counted across two
worker processes."""

import collections
import re
import socket

import pytest

from tests.support.processes import EchoBackend, free_port

pytestmark = pytest.mark.nginx

CONFIG = """
user root;
worker_processes {workers};
error_log error.log info;
pid server.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    limit_conn_zone $binary_remote_addr zone=one:1m;
    limit_conn_zone $binary_remote_addr zone=two:1m;
    limit_conn_zone $binary_remote_addr zone=dry:1m;
    limit_conn_zone $http_x_key zone=keyed:64k;
    limit_conn_zone $server_name zone=server:1m;
    upstream slow {{ server {backend}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        server_name limited;
        add_header X-Limit "$limit_conn_status" always;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /one/ {{ limit_conn one 1; proxy_pass http://slow; }}
        location /two/ {{ limit_conn two 2; limit_conn_status 429; limit_conn_log_level warn;
                          proxy_pass http://slow; }}
        location /dry/ {{ limit_conn dry 1; limit_conn_dry_run on; proxy_pass http://slow; }}
        location /keyed/ {{ limit_conn keyed 1; proxy_pass http://slow; }}
        location /both/ {{ limit_conn server 3; limit_conn one 1; proxy_pass http://slow; }}
    }}
}}
"""


def request(path, headers=(), close=True):
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    connection = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{connection}{extra}\r\n".encode()


def read_answer(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), fields.get("x-limit", "")


def at_once(port, requests):
    """Requests sent together on their own connections; their answers, counted."""
    socks = []
    for data in requests:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(data)
        socks.append(sock)
    try:
        return collections.Counter(read_answer(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def one(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return read_answer(sock)


def sequences(port):
    slow = "/slow/?ms=1000"
    seen = {
        "one": at_once(port, [request("/one" + slow)] * 4),
        "one_after": one(port, request("/one/")),
        "two": at_once(port, [request("/two" + slow)] * 5),
        "dry": at_once(port, [request("/dry" + slow)] * 3),
        "keyed": at_once(port, [request("/keyed" + slow, [("X-Key", "a")])] * 2
                         + [request("/keyed" + slow, [("X-Key", "b")])] * 2
                         + [request("/keyed" + slow)] * 2),
        "both": at_once(port, [request("/both" + slow)] * 3),
    }
    # A keep-alive connection between requests holds no count: another client gets in.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
        idle.sendall(request("/one/", close=False))
        seen["idle"] = [read_answer(idle), one(port, request("/one/"))]
    return seen


def test_limit_conn_refuses_what_nginx_refuses(start_gateway, start_nginx, tmp_path):
    backend = EchoBackend()
    try:
        seen, logged = {}, {}
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            port = free_port()
            server = start(CONFIG.format(port=port, workers=1, backend=backend.address), port)
            seen[name] = sequences(port)
            server.stop()
            logged[name] = sorted(set(re.findall(
                r'\[(\w+)\] .*?limiting connections(, dry run,)? by zone "(\w+)", client: 127.0.0.1',
                (server.dir / "error.log").read_text())))
    finally:
        backend.stop()
    assert logged["gateway"] == logged["nginx"]
    assert ("warn", "", "two") in logged["nginx"] and ("error", ", dry run,", "dry") in logged["nginx"]
    for case in seen["nginx"]:
        assert seen["gateway"][case] == seen["nginx"][case], case
    assert seen["nginx"]["one"] == {(200, "PASSED"): 1, (503, "REJECTED"): 3}
    assert seen["nginx"]["one_after"] == (200, "PASSED")
    assert seen["nginx"]["two"][(429, "REJECTED")] == 3
    assert seen["nginx"]["keyed"] == {(200, "PASSED"): 2, (503, "REJECTED"): 2, (200, ""): 2}


def test_limit_conn_counts_across_worker_processes(start_gateway, start_nginx, tmp_path):
    backend = EchoBackend()
    try:
        seen = {}
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            port = free_port()
            start(CONFIG.format(port=port, workers=2, backend=backend.address), port)
            seen[name] = at_once(port, [request("/two/slow/?ms=1000")] * 8)
    finally:
        backend.stop()
    assert seen["gateway"] == seen["nginx"] == {(200, "PASSED"): 2, (429, "REJECTED"): 6}

