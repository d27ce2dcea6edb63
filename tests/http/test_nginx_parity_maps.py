"""map and split_clients side by side with real nginx: same config, same requests, same answers."""

import contextlib

import pytest

from tests.http.test_nginx_parity import VOLATILE, fetch, upstream_view
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = r"""
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    default_type text/plain;
    upstream app {{ server {backend}; }}
    upstream hashed {{ hash $variant$mk; server {backend}; }}
    log_format vars '$mk|$variant|$site|$chained|$half';
    map $http_x_site $site {{
        hostnames;
        default none;
        example.com exact;
        *.example.org head;
        .example.net dot;
        www.example.* tail;
        ~^(?<sub>[a-z]+)\.regex\.test$ "re-$sub-$1";
    }}
    map $arg_k $mk {{
        default "d-$uri";
        ~*^A(.)$ first-$1;
        ~^a(.)$ second-$1;
        b bee;
        \default escaped;
        Upper up;
        "" empty;
    }}
    map $mk $chained {{ default no; bee yes-$site; }}
    map $arg_v $counted {{ volatile; default $arg_v; }}
    split_clients "${{arg_k}}AAA" $variant {{
        0.5% .one;
        2.0% .two;
        30% three;
        * "";
    }}
    split_clients $arg_k $half {{ 50% left; 50% right; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location /show {{ return 200 "site=$site mk=$mk chained=$chained\n"; }}
        location /split {{ add_header X-Variant "[$variant]"; return 200 "$half\n"; }}
        location /proxy/ {{
            proxy_pass http://app;
            proxy_set_header X-Site $site;
            proxy_set_header X-Mk $mk;
            proxy_set_header X-Variant $variant;
        }}
        location /redirect {{ return 302 http://$site.example/$mk; }}
        location /hashed/ {{ proxy_pass http://hashed; proxy_set_header X-Half $half; }}
        location /logged {{ access_log {dir}/vars.log vars; return 204; }}
    }}
}}
"""

CASES = [
    ("GET", "/show", {}, None),
    ("GET", "/show", {"X-Site": "example.com"}, None),
    ("GET", "/show", {"X-Site": "EXAMPLE.com."}, None),         # case, trailing dot
    ("GET", "/show", {"X-Site": "a.example.org"}, None),
    ("GET", "/show", {"X-Site": "a.b.example.org"}, None),
    ("GET", "/show", {"X-Site": "example.org"}, None),          # "*." needs a subdomain
    ("GET", "/show", {"X-Site": "example.net"}, None),          # "." covers the name too
    ("GET", "/show", {"X-Site": "x.example.net"}, None),
    ("GET", "/show", {"X-Site": "www.example.co.uk"}, None),
    ("GET", "/show", {"X-Site": "abc.regex.test"}, None),
    ("GET", "/show", {"X-Site": "ABC.regex.test"}, None),       # ~ is case-sensitive
    ("GET", "/show?k=Ax", {}, None),                             # first regex wins
    ("GET", "/show?k=ax", {}, None),
    ("GET", "/show?k=b", {"X-Site": "example.com"}, None),
    ("GET", "/show?k=B", {}, None),                              # exact keys ignore case
    ("GET", "/show?k=default", {}, None),
    ("GET", "/show?k=upper", {}, None),
    ("GET", "/show?k=", {}, None),
    ("GET", "/show?k=zzz", {}, None),
    ("GET", "/proxy/p?k=b", {"X-Site": "a.example.org"}, None),
    ("GET", "/redirect?k=Ay", {"X-Site": "example.com"}, None),
    ("GET", "/hashed/h?k=b", {}, None),          # a map and split_clients in a hash key
]


def _start(tmp_path_factory, site, backend, prepare=None):
    """nginx, then the gateway, on the same config; ``prepare(dir)`` adds files first."""
    from tests.support.processes import Gateway, Nginx
    nginx_dir = tmp_path_factory.mktemp("nginx")
    if prepare is not None:
        prepare(nginx_dir)
    nginx_port = free_port()
    nginx = Nginx(nginx_dir, site.format(dir=nginx_dir, backend=backend.address,
                                         port=nginx_port), nginx_port)
    try:
        gw_dir = tmp_path_factory.mktemp("gateway")
        if prepare is not None:
            prepare(gw_dir)
        gw_port = free_port()
        gateway = Gateway(gw_dir, site.format(dir=gw_dir, backend=backend.address,
                                              port=gw_port), gw_port)
    except BaseException:
        nginx.stop()
        raise
    return nginx, gateway


@contextlib.contextmanager
def running_pair(tmp_path_factory, site, name, prepare=None):
    """nginx and the gateway on ``site``, in front of one echo backend called ``name``;
    all three stopped after."""
    from tests.support.processes import EchoBackend
    backend = EchoBackend(name)
    try:
        nginx, gateway = _start(tmp_path_factory, site, backend, prepare)
        try:
            yield nginx, gateway
        finally:
            gateway.stop()
            nginx.stop()
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """nginx and the gateway, each on its own port, in front of one echo backend."""
    with running_pair(tmp_path_factory, SITE, "maps") as both:
        yield both


def same_answer(nginx, gateway, method, target, headers, body):
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
    assert not set(got_headers) - set(want_headers) - VOLATILE
    return want_status, want_headers, want_body


@pytest.mark.parametrize("method, target, headers, body", CASES,
                         ids=[f"{c[1]} {c[2].get('X-Site', '')}" for c in CASES])
def test_map_same_as_nginx(pair, method, target, headers, body):
    same_answer(*pair, method, target, headers, body)


def test_split_clients_same_buckets_as_nginx(pair):
    nginx, gateway = pair
    seen_variants, seen_halves = set(), set()
    for i in range(200):
        target = f"/split?k=key{i * 7919}"
        _, headers, body = same_answer(nginx, gateway, "GET", target, {}, None)
        seen_variants.add(headers["x-variant"])
        seen_halves.add(body)
    # The keys spread over the parts: the comparison above is not vacuous.
    assert {"[three]", "[]"} <= seen_variants
    assert seen_halves == {b"left\n", b"right\n"}


def test_log_format_same_as_nginx(pair):
    import time
    nginx, gateway = pair
    targets = ["/logged?k=b", "/logged?k=Az", "/logged?k=key77"]
    for target in targets:
        same_answer(nginx, gateway, "GET", target, {"X-Site": "a.example.org"}, None)
    deadline = time.monotonic() + 5
    while True:
        path = gateway.dir / "vars.log"
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= len(targets) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    want = (nginx.dir / "vars.log").read_text().splitlines()
    assert lines == want and len(want) == len(targets)
