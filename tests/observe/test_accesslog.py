"""Access logs: nginx's escaping side by side with real nginx, the json format, buffer=/flush=,
and logrotate's sequence (rename, USR1) with lines still buffered."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from tests.support.processes import free_port

CONFIG = """
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    log_format d '$request|$uri|$args|$http_user_agent|$http_x_absent|$status';
    log_format j escape=json '$request|$uri|$args|$http_user_agent|$http_x_absent|$status';
    log_format n escape=none '$request|$uri|$args|$http_user_agent|$http_x_absent|$status';
    server {{
        listen 127.0.0.1:{port};
        access_log {dir}/default.log d;
        access_log {dir}/json.log j;
        access_log {dir}/none.log n;
{ready}        location / {{ return 200 "ok"; }}
    }}
}}
"""

# Quotes, backslashes, a tab, UTF-8 and a lone 0xE9 in the head; %-escapes that decode to them
# (and to DEL) in $uri.
REQUESTS = [
    b"GET /plain?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\n\r\n",
    b'GET /q%22b%5Cc%09d%C3%A9%7F?x="y"\\z HTTP/1.1\r\nHost: x\r\n'
    b'User-Agent: q"uo\\te\there \xc3\xa9 \xe9\r\n\r\n',
]


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw[:-2] + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b" ", 2)[1]


@pytest.mark.nginx
def test_escaping_matches_nginx(tmp_path, start_gateway, start_nginx):
    logs = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        folder = tmp_path / f"{name}-logs"
        folder.mkdir()
        ready = f"        access_log {folder}/ready.log json;\n" if name == "gateway" else ""
        server = start(CONFIG.format(port=port, dir=folder, ready=ready), port)
        assert [send(port, raw) for raw in REQUESTS] == [b"200", b"200"]
        server.stop() if name == "nginx" else server.stop(signal.SIGQUIT)
        logs[name] = {f: (folder / f"{f}.log").read_bytes() for f in ("default", "json", "none")}
    ready = (tmp_path / "gateway-logs" / "ready.log").read_bytes()
    for fmt in ("default", "json", "none"):
        assert logs["gateway"][fmt] == logs["nginx"][fmt], fmt
    # Escaped as nginx does, and so, one line per request whatever the request held.
    assert logs["gateway"]["default"].count(b"\n") == 2
    assert b'q\\x22uo\\x5Cte\\x09here \\xC3\\xA9 \\xE9' in logs["gateway"]["default"]
    assert b'q\\"uo\\\\te\\there \xc3\xa9 \xe9' in logs["gateway"]["json"]
    # The ready-made json format: one JSON object per line (nginx has no such format).
    lines = ready.decode("utf-8", "replace").splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["status"] for e in entries] == [200, 200]
    assert entries[0]["request"] == "GET /plain?a=1 HTTP/1.1"
    assert entries[1]["http_user_agent"].startswith('q"uo\\te\there é')
    assert entries[0]["upstream_addr"] == "" and entries[0]["http_host"] == "x"


BUFFERED = """
worker_processes 2;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log {dir}/access.log combined buffer=64k;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def wait_for(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def request(port, path):
    assert send(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()) == b"200"


def test_logrotate_sequence_with_buffered_lines(tmp_path, start_gateway):
    """Rename, USR1: lines buffered before go to the renamed file, the next ones to a new file."""
    port = free_port()
    folder = tmp_path / "logs"
    folder.mkdir()
    gateway = start_gateway(BUFFERED.format(port=port, dir=folder), port)
    log, rotated = folder / "access.log", folder / "access.log.1"
    for i in range(20):
        request(port, f"/before/{i}")
    time.sleep(0.6)      # two sweeps of each worker: buffer=64k without flush= keeps the lines
    assert log.read_bytes() == b""
    log.rename(rotated)
    gateway.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: log.exists() and rotated.read_bytes().count(b"\n") == 20,
             "the buffered lines in the renamed file and a new file")
    for i in range(20):
        request(port, f"/after/{i}")
    gateway.stop(signal.SIGQUIT)     # a graceful stop writes what is buffered
    before, after = rotated.read_text(), log.read_text()
    assert sorted(line.split()[6] for line in before.splitlines()) == \
        sorted(f"/before/{i}" for i in range(20))
    assert sorted(line.split()[6] for line in after.splitlines()) == \
        sorted(f"/after/{i}" for i in range(20))


FLUSHED = BUFFERED.replace("buffer=64k", "buffer=64k flush=1s")


def test_flush_writes_lines_older_than_its_time(tmp_path, start_gateway):
    port = free_port()
    folder = tmp_path / "logs"
    folder.mkdir()
    start_gateway(FLUSHED.format(port=port, dir=folder), port)
    for i in range(5):
        request(port, f"/x/{i}")
    wait_for(lambda: (folder / "access.log").read_bytes().count(b"\n") == 5, "flush=1s")
