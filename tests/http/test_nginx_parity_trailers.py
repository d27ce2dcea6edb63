"""add_trailer and $sent_trailer_NAME side by side with real nginx: the same responses go
chunked, with the same trailers, for proxied responses, static files and return."""

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
    default_type text/plain;
    types {{ text/plain txt; }}
    log_format trailers "$uri $sent_trailer_x_t $sent_trailer_x_always";
    access_log {dir}/trailers.log trailers;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;
        add_trailer X-T "t-$status";
        add_trailer X-Empty "";
        add_trailer X-Always "a-$uri" always;

        location /up/ {{ proxy_pass http://app; }}
        location /files/ {{ }}
        location /ret {{ return 200 "text\n"; }}
        location /ret404 {{ return 404 "nope\n"; }}
        location /own/ {{ add_trailer X-Own own; proxy_pass http://app; }}
        location /none/ {{ add_header X-H h; proxy_pass http://app; }}
        location /gz/ {{ gzip on; gzip_types text/plain; proxy_pass http://app; }}
        location /gzfiles/ {{ gzip on; gzip_types text/plain; alias {dir}/html/files/; }}
        location /gzret {{ gzip on; default_type text/html; return 200 "<p>$request_uri and more</p>"; }}
    }}
}}
"""


def _files(folder):
    (folder / "html" / "files").mkdir(parents=True)
    (folder / "html" / "files" / "a.txt").write_bytes(b"file text\n" * 1000)
    (folder / "html" / "files" / "empty.txt").write_bytes(b"")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "trailers", _files) as both:
        yield both


def raw_fetch(port, target, version="1.1", method="GET"):
    """(status, headers, body dechunked, trailers) of one request on a fresh connection."""
    extra = "Accept-Encoding: gzip\r\n" if "/gz" in target else ""
    request = (f"{method} {target} HTTP/{version}\r\nHost: main.test\r\n{extra}"
               "Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    trailers = None
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, _, content = content.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += content[:size]
            assert content[size:size + 2] == b"\r\n"
            content = content[size + 2:]
        trailers = {}
        while True:
            line, _, content = content.partition(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            trailers[name.strip().lower()] = value.strip()
        assert content == b""
        content = body
    return int(status_line.split()[1]), headers, content, trailers


TARGETS = ["/up/big?n=100", "/up/big?n=0", "/up/chunked?n=3000&parts=3", "/up/status/404/x",
           "/files/a.txt", "/files/empty.txt", "/files/missing.txt", "/ret", "/ret404",
           "/own/big?n=10", "/none/big?n=10",
           # gzip and add_trailer: the compressed body goes chunked, then the trailers.
           "/gz/text?n=5000", "/gz/text?n=5000&chunked=3", "/gz/text?n=5000&status=404",
           "/gzfiles/a.txt", "/gzret"]
COMPARED = ("content-length", "transfer-encoding", "content-type", "x-h", "content-encoding")


@pytest.mark.parametrize("version", ["1.1", "1.0"])
@pytest.mark.parametrize("target", TARGETS)
def test_same_trailers_as_nginx(pair, target, version):
    nginx, gateway = pair
    want = raw_fetch(nginx.port, target, version)
    got = raw_fetch(gateway.port, target, version)
    assert got[0] == want[0]
    if want[0] < 300:
        assert got[2] == want[2]
    assert {k: got[1].get(k) for k in COMPARED if k != "content-length" or want[0] < 300} == \
        {k: want[1].get(k) for k in COMPARED if k != "content-length" or want[0] < 300}
    assert got[3] == want[3]


def test_head_has_no_trailers(pair):
    for server in pair:
        status, headers, body, trailers = raw_fetch(server.port, "/up/big?n=100", method="HEAD")
        assert status == 200 and body == b"" and trailers is None
        assert headers.get("content-length") == "100"


def test_sent_trailer_in_the_log(pair):
    targets = ["/up/big?n=5", "/ret", "/ret404"]
    logs = []
    for server in pair:
        log = server.dir / "trailers.log"

        def count():
            return len((log.read_text() if log.exists() else "").splitlines())
        # Earlier tests' lines may still be on their way: wait for these requests' own.
        time.sleep(0.5)
        before = count()
        for target in targets:
            raw_fetch(server.port, target)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and count() < before + len(targets):
            time.sleep(0.05)
        logs.append(log.read_text().splitlines()[-len(targets):])
    assert logs[1] == logs[0], logs
    assert logs[0][0] == "/up/big t-200 a-/up/big"
