"""valid_referers and $invalid_referer side by side with real nginx: same config, same
Referer values, same answers."""

import socket

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
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test *.wild.test ~^www\d+\.regex\.test$;
        valid_referers none blocked server_names example.com .dot.org *.head.net
                       www.tail.* gallery.com/pics/ ~\.search\. ~^ex[a-z]+\.com/deep/;
        location / {{
            if ($invalid_referer) {{ return 403; }}
            return 200 "ok [$invalid_referer]\n";
        }}
        location /strict/ {{
            valid_referers example.com;
            valid_referers other.com/only;
            if ($invalid_referer) {{ return 403; }}
            return 200 "strict\n";
        }}
        location /value/ {{ return 200 "[$invalid_referer]\n"; }}
        location /regex-only/ {{
            valid_referers ~^ONLY\.test;
            return 200 "[$invalid_referer]\n";
        }}
        location /names/ {{
            valid_referers blocked listed.test;
            location /names/inner/ {{ return 200 "inner [$invalid_referer]\n"; }}
            return 200 "[$invalid_referer]\n";
        }}
        location /set/ {{
            set $invalid_referer "was set";
            return 200 "[$invalid_referer]\n";
        }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name other.test;
        return 200 "other [$invalid_referer]\n";
    }}
}}
"""

REFERERS = [
    None, "", "-", "x", "http://", "http://i.ru", "http://i.r", "https://i.ru",
    "http://example.com", "http://example.com/", "http://EXAMPLE.com/any/path",
    "https://example.com:8443/x", "http://example.com.evil.net/", "http://www.example.com/",
    "ftp://example.com/", "example.com", "HTTP://example.com/", "HtTpS://Example.COM",
    "http://dot.org/", "http://a.dot.org/", "http://a.b.dot.org/", "http://xdot.org/",
    "http://head.net/", "http://a.head.net/", "http://a.b.head.net:80/",
    "http://www.tail.com/", "http://www.tail.co.uk/", "http://www.tail/", "http://www.tails.com/",
    "http://gallery.com/", "http://gallery.com/pics/", "http://gallery.com/pics/a.jpg",
    "http://gallery.com/PICS/a.jpg", "http://gallery.com:81/pics/1", "http://gallery.com/picsx",
    "http://www.search.example/", "http://www.SEARCH.io", "https://nosearch.io/",
    "http://example.com/deep/", "http://exabc.com/deep/x", "http://exabc.com/shallow/",
    "http://main.test/", "http://MAIN.test/page", "http://a.wild.test/", "http://wild.test/",
    "http://www12.regex.test/", "http://www.regex.test/", "http://other.test/",
    "http://" + "a" * 300 + ".com/", "http://" + "a" * 256, "http://" + "a" * 255,
    "http://listed.test/", "http://only.test/", "http://ONLY.test/", "http://x.only.test/",
    "https://example.com?query", "http://example.com:/",
]

PATHS = ["/", "/strict/", "/value/", "/regex-only/", "/names/", "/names/inner/", "/set/"]


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


def same_answer(pair, target, headers):
    nginx, gateway = pair
    want = fetch(nginx.port, "GET", target, headers, None)
    got = fetch(gateway.port, "GET", target, headers, None)
    # Error pages name the server: compare their status only.
    body = want[2] if want[0] == 200 else b""
    assert (got[0], got[2] if got[0] == 200 else b"") == (want[0], body), (target, headers)
    return want[0], body


@pytest.mark.parametrize("referer", REFERERS, ids=repr)
def test_referer(pair, referer):
    headers = {} if referer is None else {"Referer": referer}
    for path in PATHS:
        same_answer(pair, path, headers)
    same_answer(pair, "/", {**headers, "Host": "other.test"})


def test_answers_differ(pair):
    """The comparisons are not vacuous: both verdicts come up in each location."""
    for path in ("/", "/strict/", "/regex-only/", "/names/", "/names/inner/"):
        seen = {same_answer(pair, path, {} if r is None else {"Referer": r}) for r in REFERERS}
        assert len(seen) >= 2, path


def test_first_of_repeated_referers(pair):
    """nginx 1.22 judges the first Referer field of a request."""
    answers = []
    for server in pair:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /value/ HTTP/1.1\r\nHost: main.test\r\nConnection: close\r\n"
                         b"Referer: http://a.b\r\nReferer: http://x.test/\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        answers.append(data.partition(b"\r\n\r\n")[2])
    # "http://a.b" alone is too short for a scheme: blocked, so valid; joined it would not be.
    assert answers[0] == answers[1] == b"[]\n"
