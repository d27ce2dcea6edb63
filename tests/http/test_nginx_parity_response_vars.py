"""$sent_http_NAME, $upstream_http_NAME, $upstream_cookie_NAME and $sent_trailer_NAME side by
side with real nginx: in add_header (the fields known while the head is built) and in the
access log (the head as it went)."""

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
    types {{ text/plain txt; }}
    log_format heads "$uri|$status|$sent_http_content_type|$sent_http_content_length|"
                     "$sent_http_x_up|$upstream_http_x_up|$upstream_cookie_sid|"
                     "$upstream_cookie_SID|$upstream_http_x_accel_limit_rate|"
                     "$sent_http_cache_control|$sent_trailer_x|$sent_http_server|"
                     "$sent_http_connection|$sent_http_location|$upstream_http_nope";
    access_log {dir}/heads.log heads;
    log_format body "$request_uri $request_body";
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;

        location /up/ {{
            proxy_pass http://app;
            add_header X-Echo "[$upstream_http_x_up] [$sent_http_x_up] [$upstream_cookie_sid]";
            add_header X-Type "[$sent_http_content_type]";
        }}
        location /static/ {{ add_header X-Type "[$sent_http_content_type]"; }}
        location /ret {{ return 200 "[$sent_http_content_type] [$upstream_http_x_up]\n"; }}
        location /moved {{ return 302 /elsewhere; }}
        location /body/ {{
            proxy_pass http://app;
            proxy_set_header X-Body "[$request_body]";
            access_log {dir}/body.log body;
        }}
        location /logbody/ {{ proxy_pass http://app; access_log {dir}/body.log body; }}
        location /nobody {{ return 200 "body=[$request_body]"; access_log {dir}/body.log body; }}
    }}
}}
"""

UP = ("/up/headers?X-Up=hello&Set-Cookie=sid%3Dabc%3B%20Path%3D%2F"
      "&X-Accel-Limit-Rate=0&Cache-Control=no-store")
TARGETS = [UP, "/up/plain", "/static/a.txt", "/ret", "/moved"]


def _files(folder):
    (folder / "html" / "static").mkdir(parents=True)
    (folder / "html" / "static" / "a.txt").write_bytes(b"static text\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "heads", _files) as both:
        yield both


@pytest.mark.parametrize("target", TARGETS)
def test_same_answer_as_nginx(pair, target):
    nginx, gateway = pair
    same_answer(nginx, gateway, "GET", target, {}, None)


def test_same_log_lines_as_nginx(pair):
    logs = []
    for server in pair:
        for target in TARGETS:
            fetch(server.port, "GET", target, {}, None)
        log = server.dir / "heads.log"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and \
                len((log.read_text() if log.exists() else "").splitlines()) < len(TARGETS):
            time.sleep(0.05)
        lines = log.read_text().replace(f":{server.port}/", ":PORT/").splitlines()
        # The error page's length: nginx's has its version in it.
        logs.append([re.sub(r"^(/moved\|302\|text/html\|)\d+", r"\1N", line)
                     for line in lines[-len(TARGETS):]])
    assert logs[1] == logs[0], logs
    assert logs[0][0].startswith("/up/headers|200|application/json|")
    assert "|hello|hello|abc|abc|0|no-store|-|-|close|-|-" in logs[0][0]


BODIES = [("/body/x", b"hello=world"), ("/body/big", b"b" * 20000), ("/body/none", None),
          ("/logbody/x", b"logged \x01 body"), ("/nobody", b"unread")]


@pytest.mark.parametrize("target,body", BODIES, ids=[b[0] for b in BODIES])
def test_request_body_like_nginx(pair, target, body):
    nginx, gateway = pair
    same_answer(nginx, gateway, "POST", target, {}, body)


def test_request_body_in_the_log(pair):
    """Lines of this test's requests (marked "?log"; a request whose body nginx does not
    read may be logged after later ones), in order of their targets."""
    logs = []
    for server in pair:
        for target, body in BODIES:
            fetch(server.port, "POST", target + "?log", {}, body)
        log = server.dir / "body.log"

        def lines():
            return sorted(x for x in (log.read_text() if log.exists() else "").splitlines()
                          if "?log " in x)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(lines()) < len(BODIES):
            time.sleep(0.05)
        logs.append(lines())
    assert logs[1] == logs[0], logs
    assert "/body/x?log hello=world" in logs[0] and "/nobody?log -" in logs[0]
