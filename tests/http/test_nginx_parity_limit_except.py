"""limit_except side by side with real nginx: for each method, the same status, challenge and
body as nginx gives, with allow/deny (client addresses set by realip), auth_basic, satisfy,
inheritance both ways between the location and its block, a location's `return` and
`try_files` the block never inherits (its `alias` it does), proxy_pass in the block or inherited by it, and access_log in the block."""

import base64
import json
import socket
import subprocess

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
    log_format m "$request_method $uri $status";
    server {{
        listen 127.0.0.1:{port};
        root {root};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        location /get/ {{ limit_except GET {{ allow 192.0.2.0/24; deny all; }} }}
        location /getpost/ {{ limit_except GET POST {{ deny all; }} }}
        location /head/ {{ limit_except HEAD {{ deny all; }} }}
        location /case/ {{ limit_except get Options {{ deny all; }} }}
        location /auth/ {{
            limit_except GET {{ auth_basic "writers"; auth_basic_user_file {htpasswd}; }}
        }}
        location /outer/ {{ deny all; limit_except GET {{ allow all; }} }}
        location /rules/ {{
            allow 192.0.2.0/24; deny all;
            limit_except GET {{ auth_basic "rules kept"; auth_basic_user_file {htpasswd}; }}
        }}
        location /any/ {{
            satisfy any;
            limit_except GET {{
                allow 192.0.2.0/24; deny all;
                auth_basic "any"; auth_basic_user_file {htpasswd};
            }}
        }}
        location /ret/ {{ limit_except GET {{ allow all; }} return 200 "returned\\n"; }}
        location /retdeny/ {{ limit_except GET {{ deny all; }} return 200 "returned\\n"; }}
        location /page/ {{ limit_except GET {{ deny all; }} error_page 403 /denied.txt; }}
        location = /denied.txt {{ }}
        location /proxied/ {{
            proxy_pass http://{backend}/up/;
            limit_except GET {{ allow 192.0.2.0/24; deny all; }}
        }}
        location /blockproxy/ {{ limit_except GET {{ proxy_pass http://{backend}; }} }}
        location /tf/ {{ try_files $uri /denied.txt; limit_except GET {{ allow all; }} }}
        location /al/ {{ alias {root}/get/; limit_except GET {{ allow all; }} }}
        location /logged/ {{
            access_log {logs}/location.log m;
            limit_except GET {{ access_log {logs}/block.log m; }}
        }}
    }}
}}
"""

PASSWORD = "s3cret pass"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
ALLOWED, ELSEWHERE = {"X-Real-IP": "192.0.2.5"}, {"X-Real-IP": "10.0.0.1"}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD, BAD = {"Authorization": basic("writer", PASSWORD)}, {"Authorization": basic("writer", "no")}

CASES = (
    [(m, "/get/f.txt", who) for m in METHODS for who in (ALLOWED, ELSEWHERE)]
    + [(m, path, {}) for m in METHODS
       for path in ("/getpost/f.txt", "/head/f.txt", "/case/f.txt", "/outer/f.txt", "/ret/f.txt",
                    "/ret/", "/retdeny/f.txt", "/page/f.txt", "/blockproxy/f.txt",
                    "/tf/missing", "/tf/f.txt", "/al/f.txt")]
    + [(m, "/auth/f.txt", creds) for m in METHODS for creds in ({}, GOOD, BAD)]
    + [(m, "/rules/f.txt", {**who, **creds}) for m in ("GET", "POST", "DELETE")
       for who in (ALLOWED, ELSEWHERE) for creds in ({}, GOOD)]
    + [(m, "/any/f.txt", {**who, **creds}) for m in ("GET", "POST", "PUT")
       for who in (ALLOWED, ELSEWHERE) for creds in ({}, GOOD, BAD)]
    + [(m, "/proxied/a?x=1", who) for m in METHODS for who in (ALLOWED, ELSEWHERE)]
    + [("PROPFIND", "/get/f.txt", ELSEWHERE), ("MKCOL", "/getpost/f.txt", {}),
       ("LOCK", "/get/f.txt", ALLOWED)]
)


def request(port, method, path, headers):
    """(status, WWW-Authenticate, Allow, body digest) of one request on its own connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body = "hello" if method in ("POST", "PUT", "PATCH") else ""
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{length}"
                     f"{lines}\r\n{body}".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    if fields.get("content-type") == "application/json" and body:
        echoed = json.loads(body)      # what reached the backend, not how it was forwarded
        body = (echoed["method"], echoed["target"], echoed["body_length"])
    else:
        body = body.split(b"</title>")[0]      # error pages name the server in their last lines
    return int(lines[0].split()[1]), fields.get("www-authenticate"), fields.get("allow"), body


def pipelined(port, path, methods):
    """The statuses of ``methods`` sent one after another on one keep-alive connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for i, method in enumerate(methods):
            close = "Connection: close\r\n" if i == len(methods) - 1 else ""
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [int(part[:3]) for part in data.split(b"HTTP/1.1 ")[1:]]


def test_limit_except_matches_nginx(start_gateway, start_nginx, backend, tmp_path):
    root = tmp_path / "site"
    for name in ("get", "getpost", "head", "case", "auth", "outer", "rules", "any", "ret",
                 "retdeny", "page", "blockproxy", "tf", "logged"):
        (root / name).mkdir(parents=True)
        (root / name / "f.txt").write_text("file\n")
    (root / "denied.txt").write_text("denied\n")
    users = tmp_path / "htpasswd"
    apr1 = subprocess.run(["openssl", "passwd", "-apr1", PASSWORD], capture_output=True,
                          text=True, check=True).stdout.strip()
    users.write_text(f"writer:{apr1}\n")
    answers, logs = {}, {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port, folder = free_port(), tmp_path / f"{name}-logs"
        folder.mkdir()
        server = start(CONFIG.format(port=port, root=root, htpasswd=users, logs=folder,
                                     backend=backend.address), port)
        answers[name] = [request(port, method, path, headers) for method, path, headers in CASES]
        logs[name] = pipelined(port, "/logged/f.txt", ("GET", "POST", "HEAD", "DELETE", "GET"))
        server.stop()       # the logs are whole once it stopped
        logs[name] = (logs[name], {f.name: f.read_text() for f in folder.iterdir()})
    for case, got, want in zip(CASES, answers["gateway"], answers["nginx"]):
        assert got == want, case
    assert logs["gateway"] == logs["nginx"]
    # What the block is for, as nginx answers: listed methods pass, the others meet its rules.
    by_case = dict(zip(((m, p, tuple(h.items())) for m, p, h in CASES), answers["nginx"]))
    assert by_case[("GET", "/get/f.txt", tuple(ELSEWHERE.items()))][0] == 200
    assert by_case[("HEAD", "/get/f.txt", tuple(ELSEWHERE.items()))][0] == 200
    assert by_case[("POST", "/get/f.txt", tuple(ELSEWHERE.items()))][0] == 403
    assert by_case[("POST", "/auth/f.txt", ())][:2] == (401, 'Basic realm="writers"')
    assert logs["nginx"] == ([200, 405, 200, 405, 200], {
        "location.log": "GET /logged/f.txt 200\nHEAD /logged/f.txt 200\nGET /logged/f.txt 200\n",
        "block.log": "POST /logged/f.txt 405\nDELETE /logged/f.txt 405\n"})
