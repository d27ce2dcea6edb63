"""Side by side with real nginx: one config, the same upstream, the same requests.

For each request both must answer with the same status and body, and the
upstream must see the same request line and headers.  Every directive the
gateway supports gets a case here.
"""

import json
import socket

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    default_type text/plain;
    upstream app {{ server {backend}; keepalive 8; }}
    upstream app_plain {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;

        location = /exact {{ proxy_pass http://app/loc-exact; proxy_set_header X-Loc exact; }}
        location ^~ /static/ {{ proxy_pass http://app/loc-static/; proxy_set_header X-Loc static; }}
        location ~ \\.php$ {{ proxy_pass http://app; proxy_set_header X-Loc php; }}
        location ~* \\.JPG$ {{ proxy_pass http://app; proxy_set_header X-Loc jpg; }}
        location /api/ {{
            proxy_pass http://app/v1/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header X-Args $args;
            proxy_set_header X-Arg-Id $arg_id;
            proxy_set_header X-UA $http_user_agent;
            proxy_set_header X-Method $request_method;
            proxy_set_header X-Req-Uri $request_uri;
            proxy_set_header X-Uri $uri;
            proxy_set_header X-Local $server_addr;     # the ports differ: not $server_port
            location /api/inner/ {{ proxy_pass http://app/nested/; proxy_set_header X-Loc nested; }}
        }}
        location /plain/ {{ proxy_pass http://app_plain; }}
        location /implicit/ {{ proxy_pass http://{backend}/direct/; }}
        location /ret {{ return 201 "made $uri\\n"; }}
        location /moved {{ return 301 /elsewhere; }}
        location /teapot {{ return 418; }}
        location /hdr/ {{ proxy_pass http://app/; add_header X-Extra "e-$uri"; add_header X-Err e always; }}
        location / {{ proxy_pass http://app; proxy_set_header X-Loc root; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name other.test *.wild.test;
        location / {{ return 200 "other $host\\n"; }}
    }}
}}
"""

# (method, target, extra headers, body)
CASES = [
    ("GET", "/exact", {}, None),
    ("GET", "/exact/more", {}, None),
    ("GET", "/static/a/b.png?x=1", {}, None),
    ("GET", "/static/x.php", {}, None),            # ^~ beats the regex
    ("GET", "/dir/page.php?q=2", {}, None),
    ("GET", "/images/CAT.jpg", {}, None),          # ~* is case-insensitive
    ("GET", "/api/users/1?id=7&b=2", {"User-Agent": "parity/1"}, None),
    ("GET", "/api/inner/deep?z", {}, None),       # nested location
    ("GET", "/api/a%20b/../c//d", {}, None),       # URI normalised then re-escaped
    ("GET", "/api", {}, None),                      # auto 301 to /api/
    ("POST", "/api/form", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=2"),
    ("PUT", "/api/blob", {}, b"x" * 100000),
    ("DELETE", "/api/item/3", {}, None),
    ("GET", "/api/xff", {"X-Forwarded-For": "10.9.8.7"}, None),
    ("GET", "/plain/p?k=v", {}, None),              # HTTP/1.0 upstream, Connection: close
    ("GET", "/implicit/i", {}, None),
    ("GET", "/ret/x.txt", {}, None),
    ("GET", "/moved", {}, None),
    ("GET", "/teapot", {}, None),
    ("GET", "/hdr/q", {}, None),
    ("GET", "/hdr/status/500", {}, None),
    ("GET", "/anything/else", {"Cookie": "a=1", "Accept": "text/html"}, None),
    ("HEAD", "/anything", {}, None),
    ("GET", "/", {"Host": "other.test"}, None),
    ("GET", "/", {"Host": "x.wild.test:8080"}, None),
    ("GET", "/", {"Host": "unknown.test"}, None),
]

# Headers whose values legitimately differ between two servers.
VOLATILE = {"date", "server", "content-length", "connection", "keep-alive", "etag",
            "last-modified"}


def fetch(port, method, target, headers, body):
    """Send one HTTP/1.1 request on a fresh connection; return (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", "Connection: close"]
    if "Host" not in headers:
        lines.append("Host: main.test")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        content = dechunk(content)
    return status, parsed, content


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


def upstream_view(body: bytes):
    """What the echo backend saw, with per-connection noise removed."""
    try:
        seen = json.loads(body)
    except ValueError:
        return None
    headers = {k: v for k, v in seen["headers"]}
    return {"method": seen["method"], "target": seen["target"], "version": seen["version"],
            "headers": headers, "body_sha256": seen["body_sha256"]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """nginx and the gateway, each on its own port, in front of one echo backend."""
    from tests.support.processes import EchoBackend, Gateway, Nginx
    backend = EchoBackend("parity")
    started = [backend]
    try:
        nginx_dir = tmp_path_factory.mktemp("nginx")
        nginx_port = free_port()
        nginx = Nginx(nginx_dir, SITE.format(dir=nginx_dir, backend=backend.address,
                                             port=nginx_port), nginx_port)
        started.append(nginx)
        gw_dir = tmp_path_factory.mktemp("gateway")
        gw_port = free_port()
        gateway = Gateway(gw_dir, SITE.format(dir=gw_dir, backend=backend.address,
                                              port=gw_port), gw_port)
        started.append(gateway)
        yield nginx, gateway
    finally:
        for process in reversed(started):
            process.stop()


@pytest.mark.parametrize("method, target, headers, body", CASES,
                         ids=[f"{c[0]} {c[1]} {c[2].get('Host', '')}" for c in CASES])
def test_same_answer_and_same_upstream_request(pair, method, target, headers, body):
    nginx, gateway = pair
    want_status, want_headers, want_body = fetch(nginx.port, method, target, headers, body)
    got_status, got_headers, got_body = fetch(gateway.port, method, target, headers, body)
    assert got_status == want_status
    want_seen, got_seen = upstream_view(want_body), upstream_view(got_body)
    if want_seen is not None:
        assert got_seen == want_seen
    elif want_status < 300 or method == "HEAD":
        assert got_body == want_body
    for name, value in want_headers.items():
        if name in VOLATILE:
            continue
        if name == "location":   # absolute redirects name each server's own port
            value = value.replace(str(nginx.port), str(gateway.port))
        assert got_headers.get(name) == value, name
    extra = set(got_headers) - set(want_headers) - VOLATILE
    assert not extra
