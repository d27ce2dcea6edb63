"""geo side by side with real nginx: same config, same requests, same answers."""

import pytest

from tests.http.test_nginx_parity import fetch
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
    geo $client {{ default none; 127.0.0.0/8 loopback; 127.0.0.1 me; }}
    geo $http_x_addr $by_header {{
        default def;
        10.0.0.0/8 ten;
        10.1.0.0/16 ten-one;
        10.1.2.3 host;
        10.1.2.0/24 "quoted $value";
        192.168.0.0/16 private;
        255.255.255.255 no-address;
        2001:db8::/32 doc;
        2001:db8:1::/48 doc1;
        ::1 v6-loop;
        ::ffff:10.0.0.0/104 mapped-never;
        delete 192.168.0.0/16;
        192.168.1.0/24 lan;
        include geo_extra.conf;
    }}
    geo $http_x_addr $ranged {{
        ranges;
        default outside;
        10.0.0.0-10.0.0.255 r1;
        10.0.0.100-10.0.0.199 r1-mid;
        10.0.255.0-10.1.0.255 cross;
        172.16.0.0-172.31.255.255 r172;
        delete 172.20.0.0-172.20.255.255;
        include ranges_extra.conf;
    }}
    geo $ranged_client {{ ranges; 127.0.0.0-127.0.0.255 lo; }}
    geo $proxied {{
        proxy 127.0.0.1;
        proxy 10.0.0.0/8;
        default d;
        127.0.0.1 loop;
        10.0.0.0/8 ten;
        192.0.2.0/24 test-net;
        2001:db8::/32 v6doc;
    }}
    geo $recursive {{
        proxy 127.0.0.0/8;
        proxy 10.0.0.0/8;
        proxy 2001:db8::/32;
        proxy_recursive;
        default d;
        127.0.0.1 loop;
        10.0.0.0/8 ten;
        192.0.2.0/24 test-net;
        2001:db8::/32 v6doc;
    }}
    geo $http_x_addr $header_proxied {{
        proxy 10.0.0.0/8;
        proxy_recursive;
        default d;
        10.0.0.0/8 ten;
        203.0.113.0/24 doc3;
    }}
    geo $http_x_addr $ranged_proxied {{
        ranges;
        proxy 10.0.0.0/8;
        10.0.0.0-10.255.255.255 ten;
        203.0.113.0-203.0.113.255 doc3;
    }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location / {{
            return 200 "$client|$by_header|$ranged|$ranged_client|$proxied|$recursive|$header_proxied|$ranged_proxied\n";
        }}
        location /set {{ set $by_header changed; return 200 "$by_header|$client\n"; }}
    }}
}}
"""

GEO_EXTRA = "172.16.5.0/24 included;\n198.51.100.7 included-host;\n"
RANGES_EXTRA = "172.16.5.0-172.16.5.255 included;\n"

ADDRESSES = [
    None, "", "10.1.2.3", "10.1.2.4", "10.1.3.4", "10.2.0.1", "10.0.0.150", "10.0.0.50",
    "10.0.0.250", "10.0.255.10", "10.1.0.200", "10.1.1.0", "192.168.1.5", "192.168.2.5",
    "172.20.1.1", "172.21.1.1", "172.16.5.9", "198.51.100.7", "203.0.113.9", "127.0.0.1",
    "2001:db8::1", "2001:db8:1::5", "2001:DB8:0001::5", "::1", "::ffff:10.1.2.3",
    "::ffff:192.168.1.1", "::", "::1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
    "not-an-ip", "255.255.255.255", "1.2.3.", "01.002.3.4", "10.1.2.3:80", "[::1]",
    "1.2.3.4.5", "fe80::1%eth0", "::ffff:1.2.3.4.5", "10.1.2.256",
]

FORWARDED = [
    None, "", "192.0.2.7", "10.1.1.1, 192.0.2.7", "192.0.2.7, 10.1.1.1",
    "192.0.2.9, 10.0.0.1, 10.0.0.2", "203.0.113.5, 10.0.0.1", "garbage", "192.0.2.7:8080",
    "[2001:db8::5]:80", "2001:db8::5", "192.0.2.1, 2001:db8::5", "  , 192.0.2.8 , ",
    "192.0.2.7,,10.0.0.3", "198.51.100.1 10.0.0.9", "10.0.0.1, 10.0.0.2", ",10.0.0.1",
    "::ffff:10.0.0.1, 192.0.2.3", "192.0.2.1, garbage, 10.0.0.1",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """nginx and the gateway on SITE, each with the included files in its folder."""
    from tests.support.processes import Gateway, Nginx
    started = []
    try:
        for kind in (Nginx, Gateway):
            folder = tmp_path_factory.mktemp(kind.__name__.lower())
            (folder / "geo_extra.conf").write_text(GEO_EXTRA)
            (folder / "ranges_extra.conf").write_text(RANGES_EXTRA)
            port = free_port()
            started.append(kind(folder, SITE.format(dir=folder, port=port), port))
        yield started
    finally:
        for server in reversed(started):
            server.stop()


def same_body(pair, target, headers):
    nginx, gateway = pair
    want = fetch(nginx.port, "GET", target, headers, None)
    got = fetch(gateway.port, "GET", target, headers, None)
    assert (got[0], got[2]) == (want[0], want[2]), headers
    return want[2]


def _headers(addr, forwarded):
    headers = {}
    if addr is not None:
        headers["X-Addr"] = addr
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return headers


@pytest.mark.parametrize("addr", ADDRESSES, ids=repr)
def test_address_from_a_variable(pair, addr):
    same_body(pair, "/", _headers(addr, None))


@pytest.mark.parametrize("forwarded", FORWARDED, ids=repr)
def test_forwarded_for_from_trusted_proxies(pair, forwarded):
    for addr in (None, "10.9.9.9", "203.0.113.1", "2001:db8::7"):
        same_body(pair, "/", _headers(addr, forwarded))


def test_answers_differ(pair):
    """The comparisons above are not vacuous: the blocks give many values."""
    bodies = {same_body(pair, "/", _headers(addr, None)) for addr in ADDRESSES}
    assert len(bodies) > 15
    fields = [set(part) for part in zip(*(b.decode().strip().split("|") for b in bodies))]
    assert {"ten", "ten-one", "host", "quoted $value", "lan", "def", "no-address", "doc",
            "doc1", "v6-loop", "included", "included-host"} <= fields[1]
    assert {"r1", "r1-mid", "cross", "r172", "outside", "included"} <= fields[2]


def test_set_overrides_a_geo_variable(pair):
    same_body(pair, "/set", {"X-Addr": "10.1.2.3"})
