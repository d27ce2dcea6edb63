"""sub_filter side by side with real nginx: proxied bodies sent in pieces cut at awkward places
(inside a match, one byte at a time), with and without Content-Length, and static files, give
the same status, framing fields and body; case-insensitive matches, once and not once, several
patterns, variables in search and replacement strings, types, last_modified, gzip after it,
gzipped upstream answers left alone."""

import gzip as gzip_format
import socket
from urllib.parse import quote

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server_tokens off;
    default_type text/plain;
    types {{ text/html html; text/plain txt; text/css css; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /up/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            sub_filter hello "[$uri|$arg_who]";
            sub_filter WORLD earth;
        }}
        location /all/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            sub_filter hello HI;
            sub_filter_once off;
        }}
        location /multi/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            sub_filter abcx ONE;
            sub_filter abc TWO;
            sub_filter bc THREE;
            sub_filter_once off;
        }}
        location /types/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            sub_filter hello HI;
            sub_filter_types text/plain;
        }}
        location /anytype/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            sub_filter hello HI;
            sub_filter_types *;
        }}
        location /lm/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            sub_filter hello HI;
            sub_filter_last_modified on;
        }}
        location /dyn/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            sub_filter $arg_find $arg_put;
            sub_filter_once off;
        }}
        location /gz/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            sub_filter hello HI;
            sub_filter_once off;
            gzip on;
            gzip_min_length 1;
        }}
        location /static/ {{
            sub_filter hello HI;
            sub_filter_once off;
        }}
        location /static-lm/ {{
            alias {root}/static/;
            sub_filter hello HI;
            sub_filter_last_modified on;
        }}
        location /inherit/ {{
            sub_filter hello HI;
            location /inherit/static/ {{ alias {root}/static/; }}
        }}
    }}
}}
"""

PAGE = "<p>Hello hello HELLO, heLLo world! World WORLD hel</p>\n" * 3 + "hell"


def fetch(port, method, target, version=11, headers=()):
    lines = [f"{method} {target} HTTP/1.{version - 10}", "Host: x", "Connection: close",
             *headers]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *field_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in field_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding") == "chunked":
        body = unchunk(body)
    if fields.get("content-encoding") == "gzip" and body:
        body = gzip_format.decompress(body)
    kept = {k: fields.get(k) for k in ("content-type", "content-length", "transfer-encoding",
                                        "content-encoding", "vary", "etag", "last-modified",
                                        "accept-ranges")}
    return int(status_line.split()[1]), kept, body


def unchunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


def pieces(location, body, cuts, gap=3, **extra):
    query = f"body={quote(body)}&cuts={','.join(map(str, cuts))}&gap={gap}"
    for name, value in extra.items():
        query += f"&{name.replace('_', '-')}={quote(value)}"
    return f"/{location}/pieces?{query}"


def every_byte(text):
    return range(1, len(text.encode()))


REQUESTS = [
    ("GET", pieces("up", PAGE, [])),
    ("GET", pieces("up", PAGE, every_byte(PAGE)) + "&who=me"),
    ("GET", pieces("up", PAGE, [4, 6, 8, 13, 20, 40, 41])),
    ("GET", pieces("up", PAGE, [7], length="1")),
    ("HEAD", pieces("up", PAGE, [7], length="1")),
    ("GET", pieces("all", PAGE, every_byte(PAGE))),
    ("GET", pieces("all", PAGE, [2, 5, 9, 11, 50, 51, 52], length="1")),
    ("GET", pieces("all", "", [])),
    ("GET", pieces("all", "", [], length="1")),
    ("GET", pieces("all", "no match at all", [3])),
    ("GET", pieces("multi", "xabcx abcd xbc abc", every_byte("xabcx abcd xbc abc"))),
    ("GET", pieces("multi", "ab abc abcx ABCX aBc", [1, 4, 5, 9, 17])),
    ("GET", pieces("multi", "zzabc", [])),
    ("GET", pieces("multi", "zzabc", [3])),
    ("GET", pieces("multi", "xabc", [])),
    ("GET", pieces("multi", "xab", [1, 2])),
    ("GET", pieces("types", PAGE, [3], type="text/plain")),
    ("GET", pieces("types", PAGE, [3], type="text/html; charset=utf-8")),
    ("GET", pieces("types", PAGE, [3], type="application/json")),
    ("GET", pieces("anytype", PAGE, [3], type="application/json")),
    ("GET", pieces("up", PAGE, [3], type="text/plain")),
    ("GET", pieces("up", PAGE, [3], length="1", ETag='"v1"',
                   Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT")),
    ("GET", pieces("lm", PAGE, [3], length="1", ETag='"v1"',
                   Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT")),
    ("GET", pieces("dyn", PAGE, every_byte(PAGE)) + "&find=WoRlD&put=%24planet"),
    ("GET", pieces("dyn", PAGE, [5]) + "&find=&put=x"),
    ("GET", pieces("dyn", PAGE, [5])),
    ("GET", pieces("gz", PAGE * 20, [100, 101, 1000])),
    ("GET", pieces("gz", PAGE, [5], length="1")),
    ("GET", pieces("all", PAGE, [10, 30], gzip="1")),
    ("GET", "/static/page.html"),
    ("HEAD", "/static/page.html"),
    ("GET", "/static/plain.txt"),
    ("GET", "/static/empty.html"),
    ("GET", "/static-lm/page.html"),
    ("GET", "/inherit/static/page.html"),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    from tests.support.processes import EchoBackend, Gateway, Nginx
    root = tmp_path_factory.mktemp("sub") / "site"
    (root / "static").mkdir(parents=True)
    (root / "static" / "page.html").write_text(PAGE * 3000)      # several reads' worth
    (root / "static" / "plain.txt").write_text(PAGE)
    (root / "static" / "empty.html").write_text("")
    backend = EchoBackend("sub")
    got = {}
    try:
        for kind in (Nginx, Gateway):
            port = free_port()
            folder = tmp_path_factory.mktemp(kind.__name__.lower())
            server = kind(folder, CONFIG.format(port=port, root=root, backend=backend.port),
                          port)
            try:
                got[kind.__name__] = [
                    (fetch(port, method, target), fetch(port, method, target, 10),
                     fetch(port, method, target, 11, ["Accept-Encoding: gzip"]))
                    for method, target in REQUESTS]
            finally:
                server.stop()
    finally:
        backend.stop()
    return got


@pytest.mark.parametrize("index", range(len(REQUESTS)), ids=[r[1][:60] for r in REQUESTS])
def test_same_answer_as_nginx(answers, index):
    assert answers["Gateway"][index] == answers["Nginx"][index], REQUESTS[index]


def test_replacements_happen(answers):
    """Not vacuous: nginx replaced across the cuts, with variables, once and every time."""
    bodies = [a[0][2] for a in answers["Nginx"]]
    assert bodies[1].startswith(b"<p>[/up/pieces|me] hello HELLO, heLLo earth!")
    assert bodies[5].count(b"HI") == 12 and bodies[5].endswith(b"hell")
    assert b"%24planet" in bodies[23] and b"WORLD" not in bodies[23]
    assert answers["Nginx"][3][0][1]["transfer-encoding"] == "chunked"
    assert answers["Nginx"][3][1][1]["content-length"] is None
