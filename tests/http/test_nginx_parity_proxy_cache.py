"""proxy_cache side by side with real nginx: the same requests against each, each in front of
its own echo backend that logs every request it gets; the same $upstream_cache_status
sequence (``add_header X-Cache``), the same statuses, the same number of upstream requests,
and a hit answers with the body the miss stored."""

import gzip
import hashlib
import threading
import time

import orjson
import pytest

from tests.http.test_nginx_parity import fetch
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=one:1m;
    add_header X-Cache $upstream_cache_status always;
    server {{
        listen 127.0.0.1:{port};
        server_name main.test;
        proxy_cache one;
        location /headers-only/ {{ proxy_pass http://{backend}; }}
        location /short/ {{ proxy_pass http://{backend}; proxy_cache_valid 200 1s; }}
        location /codes/ {{ proxy_pass http://{backend}; proxy_cache_valid 10m; }}
        location /any/ {{ proxy_pass http://{backend}; proxy_cache_valid any 10m; }}
        location /ignore/ {{
            proxy_pass http://{backend}; proxy_cache_valid 10m;
            proxy_ignore_headers Set-Cookie Cache-Control Expires X-Accel-Expires Vary;
        }}
        location /bypass/ {{
            proxy_pass http://{backend}; proxy_cache_valid 10m;
            proxy_cache_bypass $http_x_nocache; proxy_no_cache $http_x_nostore;
        }}
        location /methods/ {{
            proxy_pass http://{backend}; proxy_cache_valid 10m; proxy_cache_methods POST;
        }}
        location /twice/ {{
            proxy_pass http://{backend}; proxy_cache_valid 10m; proxy_cache_min_uses 2;
        }}
        location /off/ {{ proxy_pass http://{backend}; proxy_cache off; }}
        location /chunks/ {{
            proxy_pass http://{backend}; proxy_cache_valid 10m; proxy_http_version 1.1;
        }}
        location /gz/ {{ proxy_pass http://{backend}; proxy_cache_valid 10m; gzip on; }}
        location /upd/ {{
            proxy_pass http://{backend}/; proxy_cache_key $arg_k; proxy_cache_valid 200 1s;
            proxy_cache_use_stale updating;
        }}
        location /live/ {{
            proxy_pass http://{backend}/; proxy_cache_key $arg_k; proxy_cache_valid 200 1s;
            proxy_cache_use_stale error timeout http_502;
        }}
        location /dead/ {{
            proxy_pass http://127.0.0.1:DEAD/; proxy_cache_key $arg_k; proxy_cache_valid 200 1s;
            proxy_cache_use_stale error timeout http_502;
        }}
        location /reval/ {{
            proxy_pass http://{backend}/; proxy_cache_key $arg_k; proxy_cache_valid 200 304 1s;
            proxy_cache_revalidate on;
        }}
        location /fresh-only/ {{
            proxy_pass http://{backend}/; proxy_cache_key $arg_k; proxy_cache_valid 200 1s;
        }}
    }}
}}
"""


class Side:
    """One server under test, its backend and that backend's request log."""

    def __init__(self, server, backend, log):
        self.server, self.backend, self.log = server, backend, log

    def upstream_requests(self, marker: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if marker in line]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.support.processes import EchoBackend, Gateway, Nginx
    dead = str(free_port())
    started, sides = [], []
    try:
        for kind, server_class in (("nginx", Nginx), ("gateway", Gateway)):
            folder = tmp_path_factory.mktemp(kind)
            log = folder / "upstream.log"
            log.touch()
            backend = EchoBackend("cache", log=log)
            started.append(backend)
            port = free_port()
            site = SITE.format(dir=folder, backend=backend.address, port=port)
            server = server_class(folder, site.replace("DEAD", dead), port)
            started.append(server)
            sides.append(Side(server, backend, log))
        yield sides
    finally:
        for process in reversed(started):
            process.stop()


def run(side, steps):
    """[(status, X-Cache or None, body)] for each step: (method, target[, headers[, pause]])."""
    out = []
    for step in steps:
        method, target = step[0], step[1]
        headers = step[2] if len(step) > 2 else {}
        if len(step) > 3:
            time.sleep(step[3])
        status, fields, body = fetch(side.server.port, method, target, headers,
                                     b"x" if method == "POST" else None)
        out.append((status, fields.get("x-cache"), body))
    return out


def same_sequence(pair, steps, marker):
    """Run ``steps`` on both; the (status, X-Cache) sequences and upstream counts must match.
    Returns the gateway's answers and nginx's (status, X-Cache) sequence."""
    nginx, gateway = pair
    want = run(nginx, steps)
    got = run(gateway, steps)
    assert [(s, c) for s, c, _ in got] == [(s, c) for s, c, _ in want]
    want_up = [line.split()[0] for line in nginx.upstream_requests(marker)]
    got_up = [line.split()[0] for line in gateway.upstream_requests(marker)]
    assert got_up == want_up        # as many upstream requests, with the same methods
    return got, [(s, c) for s, c, _ in want], want_up


def test_a_short_validity_hits_then_expires_as_nginx(pair):
    steps = [("GET", "/short/a1"), ("GET", "/short/a1"), ("GET", "/short/a1"),
             ("GET", "/short/a1", {}, 2.1), ("GET", "/short/a1")]
    got, seq, upstream = same_sequence(pair, steps, "/short/a1")
    assert seq == [(200, "MISS"), (200, "HIT"), (200, "HIT"), (200, "EXPIRED"), (200, "HIT")]
    assert len(upstream) == 2
    assert got[1][2] == got[0][2] and got[4][2] == got[3][2]


@pytest.mark.parametrize("name, query, cached", [
    ("plain", "", False),                                   # no proxy_cache_valid: not stored
    ("maxage", "Cache-Control=max-age%3D60", True),
    ("smaxage", "Cache-Control=public,%20s-maxage%3D60", True),
    ("accel", "X-Accel-Expires=60", True),
    ("accel-zero", "X-Accel-Expires=0&Cache-Control=max-age%3D60", False),
    ("accel-after", "Cache-Control=no-cache&X-Accel-Expires=60", False),   # 1.22: too late
    ("accel-first", "X-Accel-Expires=60&Cache-Control=no-cache", True),
    ("expires", "Expires=Thu,%2001%20Jan%202037%2000:00:00%20GMT", True),
    ("expired", "Expires=Thu,%2001%20Jan%201970%2000:00:00%20GMT", False),
])
def test_the_upstream_fields_decide_without_proxy_cache_valid(pair, name, query, cached):
    target = f"/headers-only/{name}/headers?{query}" if query else f"/headers-only/{name}"
    _, seq, upstream = same_sequence(pair, [("GET", target)] * 3, f"/headers-only/{name}")
    assert seq == ([(200, "MISS"), (200, "HIT"), (200, "HIT")] if cached
                   else [(200, "MISS")] * 3)
    assert len(upstream) == (1 if cached else 3)


@pytest.mark.parametrize("name, query", [
    ("cookie", "Set-Cookie=a%3D1"),
    ("private", "Cache-Control=private"),
    ("no-store", "Cache-Control=no-store"),
    ("no-cache", "Cache-Control=no-cache"),
    ("max-age-0", "Cache-Control=max-age%3D0"),
    ("vary-star", "Vary=*"),
])
def test_responses_nginx_never_stores(pair, name, query):
    target = f"/codes/{name}/headers?{query}"
    _, seq, upstream = same_sequence(pair, [("GET", target)] * 2, f"/codes/{name}/")
    assert seq == [(200, "MISS")] * 2 and len(upstream) == 2
    # proxy_ignore_headers makes them storable again.
    target = f"/ignore/{name}/headers?{query}"
    _, seq, upstream = same_sequence(pair, [("GET", target)] * 2, f"/ignore/{name}/")
    assert seq == [(200, "MISS"), (200, "HIT")] and len(upstream) == 1


def test_vary_keeps_a_variant_per_value_as_nginx(pair):
    target = "/codes/vary/headers?Vary=Accept-Language"
    en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
    steps = [("GET", target, en), ("GET", target, en), ("GET", target, fr),
             ("GET", target, fr), ("GET", target, en), ("GET", target, {})]
    got, seq, upstream = same_sequence(pair, steps, "/codes/vary/")
    assert [c for _, c in seq] == ["MISS", "HIT", "MISS", "HIT", "HIT", "MISS"]
    assert len(upstream) == 3
    assert got[1][2] == got[0][2] and got[3][2] == got[2][2] and got[4][2] == got[0][2]
    assert b'"fr"' in got[3][2] and b'"en"' in got[4][2]


def test_default_codes_and_any(pair):
    steps = [("GET", "/codes/status/404/x")] * 2 + [("GET", "/codes/status/301/x")] * 2
    _, seq, _ = same_sequence(pair, steps, "/codes/status/")
    assert seq == [(404, "MISS"), (404, "MISS"), (301, "MISS"), (301, "HIT")]
    _, seq, _ = same_sequence(pair, [("GET", "/any/status/404/x")] * 2, "/any/status/")
    assert seq == [(404, "MISS"), (404, "HIT")]


def test_head_is_fetched_as_get_and_served_from_it(pair):
    _, seq, upstream = same_sequence(pair, [("GET", "/codes/h1"), ("HEAD", "/codes/h1")],
                                     "/codes/h1")
    assert seq == [(200, "MISS"), (200, "HIT")] and upstream == ["GET"]
    got, seq, upstream = same_sequence(pair, [("HEAD", "/codes/h2"), ("GET", "/codes/h2")],
                                       "/codes/h2")
    assert seq == [(200, "MISS"), (200, "HIT")] and upstream == ["GET"]
    assert got[0][2] == b"" and b'"method":"GET"' in got[1][2]


def test_bypass_and_no_cache(pair):
    nostore, nocache = {"X-Nostore": "1"}, {"X-Nocache": "1"}
    steps = [("GET", "/bypass/b", nostore), ("GET", "/bypass/b"), ("GET", "/bypass/b"),
             ("GET", "/bypass/b", nocache), ("GET", "/bypass/b", {"X-Nocache": "0"})]
    _, seq, upstream = same_sequence(pair, steps, "/bypass/b")
    assert [c for _, c in seq] == ["MISS", "MISS", "HIT", "BYPASS", "HIT"]
    assert len(upstream) == 3


def test_methods(pair):
    steps = [("POST", "/methods/m"), ("POST", "/methods/m"), ("GET", "/methods/g"),
             ("GET", "/methods/g")]
    _, seq, upstream = same_sequence(pair, steps, "/methods/")
    assert [c for _, c in seq] == ["MISS", "HIT", "MISS", "HIT"] and len(upstream) == 2
    # Without POST in proxy_cache_methods a POST is not looked up: no status at all.
    _, seq, upstream = same_sequence(pair, [("POST", "/codes/post-only")] * 2,
                                     "/codes/post-only")
    assert seq == [(200, None)] * 2 and len(upstream) == 2


def test_min_uses(pair):
    _, seq, upstream = same_sequence(pair, [("GET", "/twice/t")] * 4, "/twice/t")
    assert [c for _, c in seq] == ["MISS", "MISS", "HIT", "HIT"] and len(upstream) == 2


def test_cache_off_has_no_status(pair):
    _, seq, upstream = same_sequence(pair, [("GET", "/off/o")] * 2, "/off/o")
    assert seq == [(200, None)] * 2 and len(upstream) == 2


def test_use_stale_on_error_and_502(pair):
    steps = [("GET", "/live/first?k=s1"),
             ("GET", "/live/status/502/x?k=s1", {}, 2.1),      # expired, upstream 502: stale
             ("GET", "/dead/x?k=s1"),                          # no upstream at all: stale
             ("GET", "/dead/x?k=s2"),                          # nothing stored: the error
             ("GET", "/fresh-only/status/502/y?k=s1")]         # no use_stale: the 502
    got, seq, _ = same_sequence(pair, steps, "k=s")
    assert seq == [(200, "MISS"), (200, "STALE"), (200, "STALE"), (502, "MISS"),
                   (502, "EXPIRED")]
    assert got[1][2] == got[0][2] == got[2][2]


def test_entries_are_files_in_nginx_layout(pair):
    for side in pair:
        fetch(side.server.port, "GET", "/codes/layout", {}, None)
        key = f"http://{side.backend.address}/codes/layout".encode()
        name = hashlib.md5(key).hexdigest()
        path = side.server.dir / "cache" / name[-1] / name[-3:-1] / name
        assert path.is_file(), side.server
    gateway = pair[1]
    assert not [p for p in (gateway.server.dir / "cache" / ".temp").iterdir()
                if p.name != "sweep.lock"]


def test_gzip_compresses_each_answer_of_one_stored_response(pair):
    target = "/gz/text?n=4000&type=text/html"
    zipped = {"Accept-Encoding": "gzip"}
    steps = [("GET", target, zipped), ("GET", target, zipped), ("GET", target),
             ("HEAD", target, zipped)]
    nginx, gateway = pair
    want = [run(nginx, [step])[0] for step in steps]
    got = [run(gateway, [step])[0] for step in steps]
    assert [(s, c) for s, c, _ in got] == [(s, c) for s, c, _ in want] == [
        (200, "MISS"), (200, "HIT"), (200, "HIT"), (200, "HIT")]
    plain = want[2][2]
    for answers in (want, got):
        assert gzip.decompress(answers[0][2]) == gzip.decompress(answers[1][2]) == plain
        assert answers[2][2] == plain and answers[3][2] == b""
    assert len(gateway.upstream_requests("/gz/")) == len(nginx.upstream_requests("/gz/")) == 1
    # A HEAD that misses gets the head a compressed GET would get, and stores the body.
    target = "/gz/head-first/text?n=4000&type=text/html"
    heads = []
    for side in pair:
        status, fields, body = fetch(side.server.port, "HEAD", target, zipped, None)
        again = fetch(side.server.port, "GET", target, zipped, None)
        heads.append((status, fields.get("x-cache"), fields.get("content-encoding"),
                      fields.get("content-length"), body, again[1].get("x-cache"),
                      gzip.decompress(again[2])))
    assert heads[1] == heads[0]
    assert heads[0][:5] == (200, "MISS", "gzip", None, b"") and heads[0][5] == "HIT"


def test_use_stale_updating_while_one_request_refreshes(pair):
    for number, side in enumerate(pair):
        key = f"u{number}"
        first = run(side, [("GET", f"/upd/first?k={key}")])
        time.sleep(2.1)
        slow = []
        refresh = threading.Thread(target=lambda: slow.extend(
            run(side, [("GET", f"/upd/slow?ms=1500&k={key}")])))
        refresh.start()
        time.sleep(0.5)
        during = run(side, [("GET", f"/upd/other?k={key}")])
        refresh.join()
        after = run(side, [("GET", f"/upd/again?k={key}")])
        assert [(s, c) for s, c, _ in first + slow + during + after] == [
            (200, "MISS"), (200, "EXPIRED"), (200, "UPDATING"), (200, "HIT")], side.server
        assert during[0][2] == first[0][2] and after[0][2] == slow[0][2]


@pytest.mark.parametrize("target", ["/chunks/many/chunked?n=50000&parts=7", "/codes/big?n=3000000"])
def test_chunked_and_large_bodies_are_stored_whole(pair, target):
    got, seq, upstream = same_sequence(pair, [("GET", target)] * 3, target.split("?")[0])
    assert seq == [(200, "MISS"), (200, "HIT"), (200, "HIT")] and len(upstream) == 1
    assert got[0][2] == got[1][2] == got[2][2] and len(got[0][2]) in (50000, 3000000)


def test_an_http10_client_gets_a_stored_chunked_response_whole(pair):
    import socket
    for side in pair:
        fetch(side.server.port, "GET", "/chunks/ten/chunked?n=20000&parts=4", {}, None)
        with socket.create_connection(("127.0.0.1", side.server.port), timeout=10) as sock:
            sock.sendall(b"GET /chunks/ten/chunked?n=20000&parts=4 HTTP/1.0\r\nHost: main.test\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"X-Cache: HIT" in head and body == b"y" * 20000, side.server


def test_conditions_and_ranges_stay_with_the_cache(pair):
    asked = {"Range": "bytes=0-9", "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT",
             "If-None-Match": '"x"', "If-Range": '"x"', "X-Other": "1"}
    got, seq, _ = same_sequence(pair, [("GET", "/codes/conditional", asked)] * 2,
                                "/codes/conditional")
    assert seq == [(200, "MISS"), (200, "HIT")]
    sent = {name for name, _ in orjson.loads(got[0][2])["headers"]}
    assert "x-other" in sent and not sent & {"range", "if-modified-since", "if-none-match",
                                             "if-range"}


def test_revalidate_asks_with_the_stored_fields_and_a_304_renews(pair):
    stored = ("/reval/headers?ETag=%22v1%22&Last-Modified=Thu,%2001%20Jan%202015%2000:00:00"
              "%20GMT&k=r1")
    steps = [("GET", stored), ("GET", "/reval/headers?ETag=%22v2%22&k=r2"),
             ("GET", "/reval/refetch?k=r1", {}, 2.1),        # expired, upstream 200
             ("GET", "/reval/status/304/x?k=r2"),             # expired, upstream 304
             ("GET", "/reval/again?k=r2")]                    # renewed by the 304
    got, seq, _ = same_sequence(pair, steps, "k=r")
    assert seq == [(200, "MISS"), (200, "MISS"), (200, "EXPIRED"), (200, "REVALIDATED"),
                   (200, "HIT")]
    sent = dict(orjson.loads(got[2][2])["headers"])
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Thu, 01 Jan 2015 00:00:00 GMT"
    assert got[3][2] == got[4][2] == got[1][2]
