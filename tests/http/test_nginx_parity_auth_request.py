"""auth_request and auth_request_set side by side with real nginx: an auth service (the echo
backend, told which status to give) behind an internal location, `return`-only auth locations,
missing ones and a dead upstream; with satisfy all/any beside allow/deny and auth_basic, an
error_page, and a proxied protected location. Same status, WWW-Authenticate, variables set from
the subrequest, body, and the same requests reaching the auth service and the upstream."""

import base64
import json
import socket

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
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;

        location = /auth {{
            internal;
            proxy_pass http://127.0.0.1:{auth}/status/$http_x_want/headers?X-User=alice&WWW-Authenticate=Bearer%20realm%3Dapi;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}
        location = /auth-204 {{ return 204; }}
        location = /auth-403 {{ return 403; }}
        location = /auth-401 {{ add_header WWW-Authenticate "Basic realm=no" always; return 401; }}
        location = /auth-302 {{ return 302 /elsewhere; }}
        location = /auth-down {{ proxy_pass http://127.0.0.1:{dead}; }}
        location = /auth-slow {{ proxy_pass http://127.0.0.1:{auth}/slow?ms=3000; proxy_read_timeout 1s; }}
        location = /auth-nouri {{ proxy_pass http://127.0.0.1:{auth}; }}
        location = /auth-rewrite {{ rewrite ^ /auth-403 last; }}
        location = /auth-denied {{ deny all; return 204; }}

        location /private/ {{
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            auth_request_set $auth_status $upstream_status;
            auth_request_set $orig $request_uri;
            add_header X-User "$user/$auth_status/$orig" always;
        }}
        location /ret204/ {{ auth_request /auth-204; }}
        location /ret403/ {{ auth_request /auth-403; }}
        location /ret401/ {{ auth_request /auth-401; }}
        location /ret302/ {{ auth_request /auth-302; }}
        location /down/ {{ auth_request /auth-down; }}
        location /nowhere/ {{ auth_request /no-such-file; }}
        location /rewritten/ {{ auth_request /auth-rewrite; }}
        location /slow/ {{ auth_request /auth-slow; }}
        location /nouri/ {{ auth_request /auth-nouri; }}
        location /denied/ {{ auth_request /auth-denied; }}
        location /off/ {{ auth_request /auth-403; location /off/inner/ {{ auth_request off; }} }}
        location /any/ {{ satisfy any; allow 192.0.2.0/24; deny all; auth_request /auth; }}
        location /all/ {{ allow 192.0.2.0/24; deny all; auth_request /auth; }}
        location /anybasic/ {{
            satisfy any;
            auth_basic "basic"; auth_basic_user_file {root}/htpasswd;
            auth_request /auth;
        }}
        location /paged/ {{ auth_request /auth; error_page 401 403 /denied.txt; }}
        location /proxied/ {{ auth_request /auth; proxy_pass http://127.0.0.1:{upstream}/up/; }}
    }}
}}
"""


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


STATIC = ["/private/f.txt", "/ret204/f.txt", "/ret403/f.txt", "/ret401/f.txt", "/ret302/f.txt",
          "/down/f.txt", "/nowhere/f.txt", "/rewritten/f.txt", "/denied/f.txt", "/off/f.txt",
          "/off/inner/f.txt", "/paged/f.txt"]
CASES = (
    [("GET", path, {"X-Want": want}) for path in STATIC for want in ("200", "401")]
    + [("GET", "/private/f.txt", {"X-Want": want}) for want in ("204", "403", "404", "500", "302")]
    + [("HEAD", "/private/f.txt", {"X-Want": "200"}), ("GET", "/auth", {"X-Want": "200"})]
    + [("GET", "/any/f.txt", {"X-Want": w, "X-Real-IP": ip})
       for w in ("200", "401", "403", "500") for ip in ("192.0.2.1", "10.0.0.1")]
    + [("GET", "/all/f.txt", {"X-Want": w, "X-Real-IP": ip})
       for w in ("200", "401") for ip in ("192.0.2.1", "10.0.0.1")]
    + [("GET", "/anybasic/f.txt", dict(h, **{"X-Want": w})) for w in ("200", "401", "403")
       for h in ({}, {"Authorization": basic("u", "pw")}, {"Authorization": basic("u", "no")})]
    + [("POST", "/proxied/x?a=1", {"X-Want": w}) for w in ("200", "403")]
    + [("GET", "/paged/f.txt", {"X-Want": "403"}), ("GET", "/slow/f.txt", {}),
       ("GET", "/nouri/f.txt?q=1", {})]
)


def fetch(port, method, path, headers):
    body = b"request body" if method == "POST" else b""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body:
        lines += f"Content-Length: {len(body)}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n"
                     .encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        fields[name.lower()] = fields[name.lower()] + " | " + value if name.lower() in fields \
            else value
    if content.startswith(b"{"):
        seen = json.loads(content)
        content = (seen["method"], seen["target"], seen["body_length"])
    else:
        content = content.split(b"<hr><center>")[0]      # error pages name their server
    return (int(lines[0].split()[1]), fields.get("www-authenticate"), fields.get("x-user"),
            fields.get("location", "").replace(f":{port}/", ":PORT/"), content)


def test_auth_request_matches_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    for name in ("private", "slow", "nouri", "ret204", "ret403", "ret401", "ret302", "down", "nowhere",
                 "rewritten", "denied", "off/inner", "any", "all", "anybasic", "paged"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "f.txt").write_text("secret\n")
    (root / "denied.txt").write_text("denied page\n")
    (root / "htpasswd").write_text("u:{PLAIN}pw\n")
    answers, seen = {}, {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        log = tmp_path / f"{name}-auth.log"
        auth = EchoBackend("auth", log=log)
        upstream = EchoBackend("up")
        try:
            port = free_port()
            start(CONFIG.format(port=port, root=root, auth=auth.port, upstream=upstream.port,
                                dead=free_port()), port)
            answers[name] = [fetch(port, *case) for case in CASES]
        finally:
            auth.stop()
            upstream.stop()
        seen[name] = log.read_text().splitlines()
    for case, got, want in zip(CASES, answers["gateway"], answers["nginx"]):
        assert got == want, case
    assert seen["gateway"] == seen["nginx"]
    nginx = dict(zip(((m, p, tuple(h.items())) for m, p, h in CASES), answers["nginx"]))
    # What the module is for: 2xx lets through, 401/403 refuse, the rest is a 500.
    assert nginx[("GET", "/private/f.txt", (("X-Want", "200"),))][0] == 200
    assert nginx[("GET", "/private/f.txt", (("X-Want", "200"),))][2] == "alice/200/" \
        "/private/f.txt"
    assert nginx[("GET", "/private/f.txt", (("X-Want", "401"),))][:2] == (401, "Bearer realm=api")
    assert nginx[("GET", "/private/f.txt", (("X-Want", "500"),))][0] == 500
    assert seen["nginx"][0].startswith("GET /status/200/headers?")


def test_client_gone_while_auth_runs(start_gateway, tmp_path):
    """A client that leaves during the subrequest costs nothing: the next requests are served."""
    root = tmp_path / "site"
    (root / "slow").mkdir(parents=True)
    (root / "slow" / "f.txt").write_text("secret\n")
    (root / "ret204").mkdir()
    (root / "ret204" / "f.txt").write_text("open\n")
    auth = EchoBackend("auth")
    try:
        port = free_port()
        start_gateway(CONFIG.format(port=port, root=root, auth=auth.port, upstream=auth.port,
                                    dead=free_port()), port)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /slow/f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /ret204/f.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /ret204/f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(b"open\n") == 2
    finally:
        auth.stop()
