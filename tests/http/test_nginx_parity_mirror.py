"""mirror and mirror_request_body side by side with real nginx: a main and a shadow echo
backend, mirrors with and without the body, two mirrors, a shadow that is down and one that is
slow. Same answers to the client, the same requests (method, target, body) reaching the shadow,
the main request alone in the access log, and no answer waiting for a mirror."""

import json
import socket
import time

import pytest

from tests.support.processes import EchoBackend, free_port

pytestmark = pytest.mark.nginx

CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    log_format short "$request $status";
    access_log {access} short;
    server {{
        listen 127.0.0.1:{port};
        location = /mirror {{ internal; proxy_pass http://127.0.0.1:{shadow}$request_uri; }}
        location = /mirror2 {{ internal; proxy_pass http://127.0.0.1:{shadow}/second$request_uri; }}
        location = /mirror-nobody {{
            internal;
            proxy_pass http://127.0.0.1:{shadow}/nobody$request_uri;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /mirror-down {{ internal; proxy_pass http://127.0.0.1:{dead}$request_uri; }}
        location = /mirror-slow {{
            internal;
            proxy_pass http://127.0.0.1:{shadow}/slow$request_uri;
        }}
        location = /mirror-missing {{ internal; return 404; }}

        location /one/ {{ mirror /mirror; proxy_pass http://127.0.0.1:{main}; }}
        location /nobody/ {{
            mirror /mirror-nobody;
            mirror_request_body off;
            proxy_pass http://127.0.0.1:{main};
        }}
        location /two/ {{ mirror /mirror; mirror /mirror2; proxy_pass http://127.0.0.1:{main}; }}
        location /down/ {{ mirror /mirror-down; proxy_pass http://127.0.0.1:{main}; }}
        location /slowpath/ {{ mirror /mirror-slow; proxy_pass http://127.0.0.1:{main}; }}
        location /missing/ {{ mirror /mirror-missing; proxy_pass http://127.0.0.1:{main}; }}
        location /off/ {{
            mirror /mirror;
            proxy_pass http://127.0.0.1:{main};
            location /off/inner/ {{ mirror off; proxy_pass http://127.0.0.1:{main}; }}
        }}
        location /ret/ {{ mirror /mirror; return 200 "returned\\n"; }}
    }}
}}
"""

BODY = b"a request body \x00\xff" * 5000       # beyond one read, and binary
CASES = [
    ("GET", "/one/a?x=1", b""),
    ("POST", "/one/b?y=2", BODY),
    ("PUT", "/one/c", b"small"),
    ("POST", "/nobody/d?z=3", BODY),
    ("GET", "/two/e", b""),
    ("POST", "/two/f", b"twice"),
    ("POST", "/down/g", b"lost"),
    ("GET", "/missing/h", b""),
    ("GET", "/off/i", b""),
    ("GET", "/off/inner/j", b""),
    ("GET", "/ret/k", b""),
    ("POST", "/slowpath/l?ms=2000", b"late"),
]
SHADOW_LINES = 10       # two for each /two/ request, none from /off/inner/ or /ret/


def fetch(port, method, path, body):
    """(status, what the main backend saw or the body); read by Content-Length, as nginx
    keeps the connection until its mirrors end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        length = f"Content-Length: {len(body)}\r\n" if body or method != "GET" else ""
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{length}\r\n".encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, content = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        size = next(int(line.split(":")[1]) for line in lines
                    if line.lower().startswith("content-length:"))
        while len(content) < size:
            content += sock.recv(65536)
    if content.startswith(b"{"):
        seen = json.loads(content)
        content = (seen["backend"], seen["method"], seen["target"], seen["body_sha256"])
    return int(lines[0].split()[1]), content


def wait_lines(path, count, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    return sorted(path.read_text().splitlines()) if path.exists() else []


def test_mirror_matches_nginx(start_gateway, start_nginx, tmp_path):
    answers, seen, logged, times = {}, {}, {}, {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        shadow_log = tmp_path / f"{name}-shadow.log"
        access = tmp_path / f"{name}-access.log"
        shadow = EchoBackend("shadow", log=shadow_log, log_bodies=True)
        main = EchoBackend("main")
        try:
            port = free_port()
            start(CONFIG.format(port=port, main=main.port, shadow=shadow.port, dead=free_port(),
                                access=access), port)
            answers[name], times[name] = [], []
            for case in CASES:
                began = time.monotonic()
                answers[name].append(fetch(port, *case))
                times[name].append(time.monotonic() - began)
            seen[name] = wait_lines(shadow_log, SHADOW_LINES)
            logged[name] = wait_lines(access, len(CASES))
        finally:
            shadow.stop()
            main.stop()
    for case, got, want in zip(CASES, answers["gateway"], answers["nginx"]):
        assert got == want, case
    assert seen["gateway"] == seen["nginx"]
    assert logged["gateway"] == logged["nginx"]
    # What the module is for: the client's answer is the main backend's, whatever the shadow.
    for (method, path, body), (status, content) in zip(CASES, answers["nginx"]):
        if not path.startswith("/ret/"):
            assert status == 200 and content[:3] == ("main", method, path), path
    assert len(seen["nginx"]) == SHADOW_LINES
    assert f"POST /one/b?y=2 {len(BODY)}" in "\n".join(seen["nginx"])
    assert "POST /nobody/nobody/d?z=3 0 e3b0c44298fc1c14" in seen["nginx"]
    assert "GET /second/two/e 0 e3b0c44298fc1c14" in seen["nginx"]
    assert not any("/off/inner/" in line or "/ret/" in line for line in seen["nginx"])
    # A shadow that waits 2 s delays neither answer.
    assert times["nginx"][-1] < 1.0 and times["gateway"][-1] < 1.0, times


def test_many_slow_mirrors_do_not_slow_answers(start_gateway, tmp_path):
    """Requests keep their pace while their mirrors wait on a slow shadow."""
    shadow = EchoBackend("shadow")
    main = EchoBackend("main")
    try:
        port = free_port()
        start_gateway(CONFIG.format(port=port, main=main.port, shadow=shadow.port,
                                    dead=free_port(), access=tmp_path / "access.log"), port)
        began = time.monotonic()
        for i in range(20):
            status, content = fetch(port, "POST", f"/slowpath/{i}?ms=2000", b"x" * i)
            assert status == 200 and content[0] == "main"
        assert time.monotonic() - began < 2.0
    finally:
        shadow.stop()
        main.stop()
