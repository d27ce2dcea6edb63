"""$connection_time, $pipe and $tcpinfo_* side by side with real nginx: the same values
where they do not depend on the connection ($pipe), the same form where they do."""

import re
import socket
import time

import pytest

from tests.http.test_nginx_parity_maps import running_pair

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    log_format conn "$request_uri|$connection_requests|$pipe|$connection_time|"
                    "$tcpinfo_rtt|$tcpinfo_rttvar|$tcpinfo_snd_cwnd|$tcpinfo_rcv_space";
    access_log {dir}/conn.log conn;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location /conn {{
            return 200 "$pipe|$connection_time|$tcpinfo_rtt|$tcpinfo_rttvar|$tcpinfo_snd_cwnd|$tcpinfo_rcv_space";
        }}
        location /up/ {{ proxy_pass http://app; add_header X-Pipe $pipe; }}
    }}
}}
"""

# What nginx prints: "%T.%03M" seconds, then four decimal u32s of struct tcp_info.
FORM = re.compile(r"[.p]\|\d+\.\d{3}\|\d+\|\d+\|\d+\|\d+")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "conn") as both:
        yield both


def _request(target, last=False):
    close = "Connection: close\r\n" if last else ""
    return f"GET {target} HTTP/1.1\r\nHost: main.test\r\n{close}\r\n".encode()


def _responses(sock, count):
    """``count`` responses (Content-Length framed) read from ``sock``: (headers, body) each."""
    data, out = b"", []
    while len(out) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").split("\r\n")
            fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in head[1:])}
            end = head_end + 4 + int(fields["content-length"])
            if len(data) >= end:
                out.append((fields, data[head_end + 4:end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
    return out


def _pipelined(port, targets):
    """Send every request in one write; the answers in order."""
    payload = b"".join(_request(t, i == len(targets) - 1) for i, t in enumerate(targets))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        return _responses(sock, len(targets))


def test_pipe_like_nginx(pair):
    """The first request read is not pipelined, those read with it are (nginx's r->pipeline)."""
    for server in pair:
        answers = _pipelined(server.port, ["/conn?a", "/conn?b", "/conn?c"])
        bodies = [body.decode() for _, body in answers]
        assert [b[0] for b in bodies] == [".", "p", "p"], (server, bodies)
        assert all(FORM.fullmatch(b) for b in bodies), bodies
        proxied = _pipelined(server.port, ["/up/x", "/up/y"])
        assert [fields["x-pipe"] for fields, _ in proxied] == [".", "p"]


def test_keepalive_requests_are_not_pipelined(pair):
    """Each request sent after the previous answer: "." each, $connection_time growing."""
    for server in pair:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            bodies = []
            for i in range(3):
                sock.sendall(_request(f"/conn?k{i}", i == 2))
                bodies.append(_responses(sock, 1)[0][1].decode())
                time.sleep(0.01)
        assert all(FORM.fullmatch(b) and b[0] == "." for b in bodies), bodies
        times = [float(b.split("|")[1]) for b in bodies]
        assert times == sorted(times), times


def test_logged_like_nginx(pair):
    """The access log: $pipe the same, the rest of the same form."""
    logs = []
    for server in pair:
        _pipelined(server.port, ["/conn?log1", "/conn?log2"])
        log = server.dir / "conn.log"
        deadline = time.monotonic() + 5

        def lines():
            return [x.split("|") for x in (log.read_text() if log.exists() else "").splitlines()
                    if x.startswith("/conn?log")]
        while time.monotonic() < deadline and len(lines()) < 2:
            time.sleep(0.02)
        logs.append(lines())
    for lines in logs:
        assert [x[:3] for x in lines] == [["/conn?log1", "1", "."], ["/conn?log2", "2", "p"]]
        assert all(FORM.fullmatch("|".join(x[2:])) for x in lines), lines
