"""secure_link side by side with real nginx: links checked with secure_link + secure_link_md5
(valid, expired, wrong or malformed hashes and expiry times) and with secure_link_secret give
the same $secure_link, $secure_link_expires and answers."""

import base64
import hashlib
import time

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
    server_tokens off;
    default_type text/plain;
    secure_link_secret http-level;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location /s/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri$remote_addr secret";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            return 200 "ok [$secure_link] [$secure_link_expires]\n";
        }}
        location /raw/ {{
            secure_link $arg_h;
            secure_link_md5 "$uri secret";
            return 200 "[$secure_link] [$secure_link_expires]\n";
        }}
        location /order/ {{
            secure_link $arg_h;
            secure_link_md5 "$uri secret";
            return 200 "[$secure_link_expires] [$secure_link] [$secure_link_expires]\n";
        }}
        location /p/ {{
            secure_link_secret s3cr3t;
            if ($secure_link = "") {{ return 403; }}
            return 200 "link [$secure_link]\n";
        }}
        location /inherited/ {{ return 200 "[$secure_link]\n"; }}
        location /half/ {{ secure_link $arg_h; return 200 "[$secure_link]\n"; }}
        location /none/ {{
            secure_link_md5 "$uri secret";
            location /none/inner/ {{
                secure_link $arg_h;
                return 200 "[$secure_link]\n";
            }}
            return 200 "[$secure_link]\n";
        }}
    }}
}}
"""


def b64md5(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.md5(text.encode()).digest()).decode().rstrip("=")


def hexmd5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.support.processes import Gateway, Nginx
    started = []
    try:
        for kind in (Nginx, Gateway):
            folder = tmp_path_factory.mktemp(kind.__name__.lower())
            port = free_port()
            started.append(kind(folder, SITE.format(dir=folder, port=port), port))
        yield started
    finally:
        for server in reversed(started):
            server.stop()


def same_answer(pair, target):
    nginx, gateway = pair
    want = fetch(nginx.port, "GET", target, {}, None)
    got = fetch(gateway.port, "GET", target, {}, None)
    body = want[2] if want[0] == 200 else b""
    assert (got[0], got[2] if got[0] == 200 else b"") == (want[0], body), target
    return want[0], body


def expiring_links():
    now = int(time.time())
    future, past = now + 3600, now - 3600
    uri = "/s/file.txt"
    good = b64md5(f"{future}{uri}127.0.0.1 secret")
    old = b64md5(f"{past}{uri}127.0.0.1 secret")
    return [
        (f"{uri}?md5={good}&expires={future}", 200),
        (f"{uri}?md5={good}==&expires={future}", 200),         # padding is allowed
        (f"{uri}?md5={good}=x&expires={future}", 200),         # and what follows it ignored
        (f"{uri}?md5={old}&expires={past}", 410),
        (f"{uri}?md5={good}&expires={future + 1}", 403),
        (f"{uri}?md5={good}&expires=0", 403),
        (f"{uri}?md5={good}&expires=-5", 403),
        (f"{uri}?md5={good}&expires=12x", 403),
        (f"{uri}?md5={good}&expires=99999999999999999999", 403),
        (f"{uri}?md5={good}", 403),
        (f"{uri}?expires={future}", 403),
        (f"{uri}?md5={good[:-1]}&expires={future}", 403),
        (f"{uri}?md5={good}A&expires={future}", 403),
        (f"{uri}?md5={good.replace('-', '+').replace('_', '/')}&expires={future}", None),
        (f"/s/other.txt?md5={good}&expires={future}", 403),
        (f"{uri}?md5=&expires={future}", 403),
    ]


def test_expiring_links(pair):
    for target, status in expiring_links():
        got = same_answer(pair, target)
        if status is not None:
            assert got[0] == status, target


def test_links_without_expiry(pair):
    uri = "/raw/a/b.bin"
    good = b64md5(f"{uri} secret")
    targets = [f"{uri}?h={good}", f"{uri}?h={good},", f"{uri}?h={good},0", f"{uri}?h={good},1",
               f"{uri}?h={good},{int(time.time()) + 100}", f"{uri}?h={good[:10]}",
               f"{uri}?h={good}AA", f"{uri}?h=" + "A" * 25, f"{uri}?h=wrong,5", f"{uri}?h=",
               f"{uri}?h={b64md5('other')}", uri, f"{uri}?h={good}%3D%3D"]
    answers = [same_answer(pair, t) for t in targets]
    assert answers[0] == (200, b"[1] []\n")
    assert answers[3] == (200, b"[0] [1]\n")
    for uri in ("/order/x", "/half/x", "/none/x", "/none/inner/x", "/inherited/x"):
        same_answer(pair, f"{uri}?h={b64md5(uri + ' secret')},7")


def test_secret_links(pair):
    link = "dir/file.txt"
    targets = [f"/p/{hexmd5(link + 's3cr3t')}/{link}",
               f"/p/{hexmd5(link + 's3cr3t').upper()}/{link}",
               f"/p/{hexmd5(link + 'wrong')}/{link}",
               f"/p/{hexmd5('dir/file.txt?x=1s3cr3t')}/dir/file.txt?x=1",
               f"/p/{hexmd5(link + 's3cr3t')}/", f"/p/{hexmd5(link + 's3cr3t')[:31]}/{link}",
               "/p/" + "g" * 32 + "/" + link, "/p/", "/p/x",
               f"/inherited/{hexmd5('x' + 'http-level')}/x",
               f"/inherited/{hexmd5('x' + 's3cr3t')}/x"]
    answers = [same_answer(pair, t) for t in targets]
    assert answers[0] == (200, b"link [dir/file.txt]\n")
    assert answers[2][0] == 403
