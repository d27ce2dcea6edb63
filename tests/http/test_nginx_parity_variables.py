"""nginx 1.22's core and proxy variables added for issue 11 side by side with real nginx:
$proxy_port, $request_id, $request_completion, $request_filename, $request_body_file;
and log_not_found."""

import re
import time

import pytest

from tests.http.test_nginx_parity import fetch
from tests.http.test_nginx_parity_maps import running_pair, same_answer

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    log_format done "$uri $request_completion $request_body_file.";
    access_log {dir}/done.log done;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;

        location /up/ {{ proxy_pass http://app; proxy_set_header X-Port $proxy_port; }}
        location /direct/ {{
            proxy_pass http://{backend};
            proxy_set_header X-Port "$proxy_port $proxy_host";
        }}
        location /noproxy {{ return 200 "[$proxy_port] [$request_completion] [$request_body_file]\n"; }}
        location /id {{ add_header X-Id $request_id; return 200 "$request_id\n"; }}
        location /file/ {{ return 200 "$request_filename\n"; }}
        location /al/ {{ alias {dir}/aliased/; return 200 "$request_filename\n"; }}
        location ~ ^/rx/(\w+)$ {{ alias {dir}/sites/$1; return 200 "$request_filename\n"; }}
        location /loud/ {{ }}
        location /quiet/ {{ log_not_found off; }}
    }}
}}
"""


def _files(folder):
    (folder / "html").mkdir()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "variables", _files) as both:
        yield both


@pytest.mark.parametrize("target", ["/up/x", "/direct/y?a=1", "/noproxy"])
def test_same_answer_as_nginx(pair, target):
    nginx, gateway = pair
    same_answer(nginx, gateway, "GET", target, {}, None)


@pytest.mark.parametrize("target", ["/file/a/b.txt", "/al/x/y", "/rx/word"])
def test_request_filename(pair, target):
    """Each side answers its own folder: the same path below it."""
    nginx, gateway = pair
    want = fetch(nginx.port, "GET", target, {}, None)
    got = fetch(gateway.port, "GET", target, {}, None)
    assert got[0] == want[0] == 200
    assert got[2].decode().replace(str(gateway.dir), "DIR") == \
        want[2].decode().replace(str(nginx.dir), "DIR")
    assert b"DIR" not in got[2]


def test_request_id_is_random_and_one_per_request(pair):
    for server in pair:
        ids = set()
        for _ in range(3):
            status, headers, body = fetch(server.port, "GET", "/id", {}, None)
            assert status == 200
            assert re.fullmatch(r"[0-9a-f]{32}", headers["x-id"])
            assert body.decode().strip() == headers["x-id"]
            ids.add(headers["x-id"])
        assert len(ids) == 3


@pytest.mark.parametrize("target,line", [
    ("/file/logged", "/file/logged OK -."),
    # Read by the return first, then kept for the request: nginx caches it.
    ("/noproxy", "/noproxy  -."),
])
def test_request_completion_in_the_log(pair, target, line):
    lines = []
    for server in pair:
        fetch(server.port, "GET", target, {}, None)
        log = server.dir / "done.log"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and target not in \
                (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        lines.append([x for x in log.read_text().splitlines() if x.startswith(target)][-1])
    assert lines == [line] * 2


def test_log_not_found(pair):
    """A missing file is logged in nginx's words, unless log_not_found is off."""
    for server in pair:
        for target in ("/loud/nope.txt", "/quiet/nope.txt"):
            assert fetch(server.port, "GET", target, {}, None)[0] == 404
    expected = []
    for server in pair:
        line = (f'open() "{server.dir}/html/loud/nope.txt" failed (2: No such file or directory), '
                'client: 127.0.0.1, server: main.test, request: "GET /loud/nope.txt HTTP/1.1", '
                'host: "main.test"')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and line not in (server.dir / "error.log").read_text():
            time.sleep(0.05)
        text = (server.dir / "error.log").read_text()
        expected.append((line in text, "quiet/nope.txt" in text))
    assert expected == [(True, False)] * 2
