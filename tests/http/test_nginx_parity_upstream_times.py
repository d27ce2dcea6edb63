"""$upstream_connect_time and $upstream_header_time side by side with real nginx: one value
per try, joined like $upstream_status, "-" for a try that never connected or never got a
header, and 0.000 for a cached keep-alive connection.

Times differ from run to run, so the lines are compared with every time replaced by T; where
nginx's value is exact (a cached connection's 0.000) or bounded (a slow header) it is checked
as a number."""

import re

import pytest

from tests.http.test_nginx_parity import fetch
from tests.http.test_nginx_parity_maps import running_pair
from tests.http.test_nginx_parity_upstream_counts import _line, short_upstream
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    log_format times "$request_uri|$upstream_status|$upstream_connect_time|"
                     "$upstream_header_time|$upstream_response_time";
    access_log {dir}/times.log times;
    upstream app {{ server {backend}; }}
    upstream cached {{ server {backend}; keepalive 4; }}
    # A dead peer first, never marked down: every request tries it, then the backup.
    upstream retry {{ server 127.0.0.1:DEAD max_fails=0; server {backend} backup; }}
    upstream twice {{ server {backend} max_fails=0; server {backend} max_fails=0; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location /up/ {{ proxy_pass http://app; }}
        location /cached/ {{
            proxy_pass http://cached; proxy_http_version 1.1; proxy_set_header Connection "";
        }}
        location /retry/ {{ proxy_pass http://retry; }}
        location /twice/ {{ proxy_pass http://twice; proxy_next_upstream error http_502; }}
        location /short/ {{ proxy_pass http://127.0.0.1:SHORT; }}
        location /none {{ return 200 "[$upstream_connect_time][$upstream_header_time]"; }}
    }}
}}
"""

TIME = re.compile(r"\d+\.\d{3}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with short_upstream() as short_port:
        site = SITE.replace("DEAD", str(free_port())).replace("SHORT", str(short_port))
        with running_pair(tmp_path_factory, site, "times") as both:
            yield both


def _fields(server, target):
    return _line(server, target, "times.log")


def _both(pair, target):
    """Each server's (status, log fields) for one GET of ``target``."""
    out = []
    for server in pair:
        status, _, _ = fetch(server.port, "GET", target, {}, None)
        out.append((status, _fields(server, target)))
    return out


@pytest.mark.parametrize("target, upstream_status, shape", [
    ("/up/plain", "200", ["T", "T", "T"]),
    ("/retry/dead-first", "502, 200", ["-, T", "-, T", "T, T"]),
    ("/twice/status/502/both", "502, 502", ["T, T", "T, T", "T, T"]),
    ("/short/closes", "200", ["T", "T", "T"]),
])
def test_times_per_try_as_nginx(pair, target, upstream_status, shape):
    (want_status, want), (got_status, got) = _both(pair, target)
    assert got_status == want_status
    assert got[0] == want[0] == upstream_status
    assert [TIME.sub("T", field) for field in got[1:]] == shape
    assert [TIME.sub("T", field) for field in want[1:]] == shape


def test_a_cached_connection_took_no_time_to_connect_as_in_nginx(pair):
    for server in pair:
        fetch(server.port, "GET", "/cached/first", {}, None)
        fetch(server.port, "GET", "/cached/again", {}, None)
        connect, header, response = _fields(server, "/cached/again")[1:]
        assert connect == "0.000", server
        assert float(header) <= float(response)


def test_a_slow_header_is_counted_from_the_try_start(pair):
    for server in pair:
        fetch(server.port, "GET", "/up/slow?ms=300", {}, None)
        connect, header, response = _fields(server, "/up/slow?ms=300")[1:]
        assert float(connect) < 0.3 <= float(header) <= float(response), (server, connect, header)


def test_without_upstream_empty_as_nginx(pair):
    results = []
    for server in pair:
        status, _, body = fetch(server.port, "GET", "/none", {}, None)
        results.append((status, body, _fields(server, "/none")))
    (want_status, want_body, want), (got_status, got_body, got) = results
    assert (got_status, got_body) == (want_status, want_body) == (200, b"[][]")
    assert got == want == ["-", "-", "-", "-"]
