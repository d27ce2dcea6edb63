"""Examples from nginx's own documentation that the gateway loaded wrongly or refused (issue
11's drop-in sweep), side by side with real nginx: ``access_log ... if=`` (the log module's
example: only 4xx and 5xx logged through a map), ``if_modified_since`` and ``max_ranges``."""

import email.utils
import os
import time

import pytest

from tests.http.test_nginx_parity import fetch
from tests.http.test_nginx_parity_maps import running_pair

pytestmark = pytest.mark.nginx

MTIME = 1_700_000_000
SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    map $status $loggable {{
        ~^[23]  0;
        default 1;
    }}
    log_format brief "$uri $status";
    access_log {dir}/errors.log brief if=$loggable;
    access_log {dir}/all.log brief;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;
        location /up/ {{ proxy_pass http://app; }}
        location /arg/ {{ access_log {dir}/arg.log brief if=$arg_log; return 204; }}
        location /exact/ {{ }}
        location /before/ {{ if_modified_since before; }}
        location /off/ {{ if_modified_since off; }}
        location /one/ {{ max_ranges 1; }}
        location /none/ {{ max_ranges 0; }}
    }}
}}
"""


def _files(folder):
    for name in ("exact", "before", "off", "one", "none"):
        (folder / "html" / name).mkdir(parents=True)
        path = folder / "html" / name / "f.txt"
        path.write_bytes(b"0123456789" * 10)
        os.utime(path, (MTIME, MTIME))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "dropin", _files) as both:
        yield both


def _lines(server, name, count):
    path = server.dir / name
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    time.sleep(0.3)     # nothing more should come
    return path.read_text().splitlines() if path.exists() else []


def test_access_log_if_like_nginx(pair):
    targets = ["/up/a", "/up/status/404/b", "/nothing-here", "/up/status/500/c", "/up/d",
               "/arg/x?log=1", "/arg/y?log=0", "/arg/z"]
    logs = {}
    for server in pair:
        for target in targets:
            fetch(server.port, "GET", target, {}, None)
        logs[server] = (_lines(server, "all.log", len(targets)),
                        _lines(server, "errors.log", 3), _lines(server, "arg.log", 1))
    nginx, gateway = pair
    assert logs[gateway] == logs[nginx]
    assert logs[nginx][1] == ["/up/status/404/b 404", "/nothing-here 404",
                              "/up/status/500/c 500"]
    assert logs[nginx][2] == ["/arg/x 204"]


def _date(offset):
    return email.utils.formatdate(MTIME + offset, usegmt=True)


@pytest.mark.parametrize("where", ["exact", "before", "off"])
@pytest.mark.parametrize("offset", [-10, 0, 10])
def test_if_modified_since_like_nginx(pair, where, offset):
    nginx, gateway = pair
    headers = {"If-Modified-Since": _date(offset)}
    want = fetch(nginx.port, "GET", f"/{where}/f.txt", headers, None)
    got = fetch(gateway.port, "GET", f"/{where}/f.txt", headers, None)
    assert got[0] == want[0]
    assert got[2] == want[2]


@pytest.mark.parametrize("where", ["exact", "one", "none"])
@pytest.mark.parametrize("spec", ["bytes=0-4", "bytes=0-4,10-14", "bytes=500-"])
def test_max_ranges_like_nginx(pair, where, spec):
    nginx, gateway = pair
    want = fetch(nginx.port, "GET", f"/{where}/f.txt", {"Range": spec}, None)
    got = fetch(gateway.port, "GET", f"/{where}/f.txt", {"Range": spec}, None)
    assert got[0] == want[0]
    if want[0] < 300:
        assert got[2] == want[2]
    for name in ("accept-ranges", "content-range", "content-length"):
        if want[0] < 300 or name == "content-range":
            assert got[1].get(name) == want[1].get(name), name
