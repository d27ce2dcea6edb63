"""Response and upstream-request header directives side by side with real nginx: expires,
proxy_hide_header/proxy_pass_header/proxy_ignore_headers, proxy_redirect, proxy_cookie_domain
and _path, proxy_method, proxy_pass_request_headers, proxy_set_body, proxy_intercept_errors.
The same config and requests give the same status, fields that matter, body, and the same
request seen by the upstream (the echo backend's body)."""

import json
import re
import socket
from email.utils import parsedate_to_datetime
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
    expires 5m;
    server {{
        listen 127.0.0.1:{port};
        location /e/access/ {{ expires 1h; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/plus/ {{ expires +1d; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/neg/ {{ expires -1h; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/epoch/ {{ expires epoch; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/max/ {{ expires max; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/zero/ {{ expires 0; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/modified/ {{ expires modified 1d; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/oldmod/ {{ expires modified 1h; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/daily/ {{ expires @3h30m; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/off/ {{ expires off; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/inherited/ {{ proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/var/ {{ expires $arg_e; proxy_pass http://127.0.0.1:{backend}/; }}
        location /e/if/ {{
            expires 1h;
            if ($arg_x) {{ expires 2h; }}
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location = /e/return {{ expires 1h; add_header X-Mine yes; return 200 "hi"; }}
        location = /e/return404 {{ expires 1h; return 404; }}
        location = /e/moved {{ expires epoch; return 301 /elsewhere; }}
        location /e/files/ {{ expires modified 2h; root {root}; }}
        location /e/static/ {{ expires 30s; root {root}; }}

        location /h/hide/ {{ proxy_hide_header X-Backend; proxy_hide_header x-other;
                             proxy_pass http://127.0.0.1:{backend}/; }}
        location /h/pass/ {{ proxy_pass_header Server; proxy_pass_header X-Accel-Expires;
                             proxy_pass_header X-Pad; proxy_pass http://127.0.0.1:{backend}/; }}
        location /h/plain/ {{ proxy_pass http://127.0.0.1:{backend}/; }}
        location /h/ignore/ {{ proxy_ignore_headers X-Accel-Expires Set-Cookie Vary;
                               proxy_pass http://127.0.0.1:{backend}/; }}

        location /r/default/ {{ proxy_pass http://127.0.0.1:{backend}/; }}
        location /r/nouri/ {{ proxy_pass http://127.0.0.1:{backend}; }}
        location /r/off/ {{ proxy_redirect off; proxy_pass http://127.0.0.1:{backend}/; }}
        location /r/strings/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_redirect http://old.example/ /new/;
            proxy_redirect http://other.example/ http://$host:1234/o/;
        }}
        location /r/regex/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_redirect ~^http://up\\.([a-z]+)/(.*)$ https://$1.example/$2;
            proxy_redirect ~*^HTTP://CI/ /ci/;
        }}
        location /r/explicit/ {{
            proxy_pass http://127.0.0.1:{backend}/up/;
            proxy_redirect default;
            proxy_redirect http://z.example/ /z/;
        }}
        location /r/relative/ {{ absolute_redirect off;
                                 proxy_redirect http://old.example/ /new/;
                                 proxy_pass http://127.0.0.1:{backend}/; }}

        location /c/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_cookie_domain old.example new.example;
            proxy_cookie_domain ~^(.+)\\.internal$ $1.public;
            proxy_cookie_path /app/ /;
            proxy_cookie_path ~*^/X(.*)$ /y$1;
        }}

        location /m/ {{ proxy_method POST; proxy_pass http://127.0.0.1:{backend}/; }}
        location /nh/ {{ proxy_pass_request_headers off; proxy_set_header X-Kept k;
                         proxy_pass http://127.0.0.1:{backend}/; }}
        location /sb/ {{ proxy_set_body "body of $request_method $arg_a";
                         proxy_pass http://127.0.0.1:{backend}/; }}

        location /i/ {{
            proxy_intercept_errors on;
            error_page 404 /errors/404.txt;
            error_page 500 502 =200 @fallback;
            error_page 302 /errors/moved.txt;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /i_off/ {{ error_page 404 /errors/404.txt; proxy_pass http://127.0.0.1:{backend}/; }}
        location /errors/ {{ root {root}; }}
        location @fallback {{ return 200 "fallback"; }}
    }}
}}
"""

LAST_MODIFIED = quote("Sat, 01 Jan 2000 00:00:00 GMT")


def cookie(value):
    return "/c/headers?Set-Cookie=" + quote(value)


CASES = [
    # expires on proxied responses: each mode, the upstream's own Expires/Cache-Control
    "/e/access/x", "/e/plus/x", "/e/neg/x", "/e/epoch/x", "/e/max/x", "/e/zero/x",
    "/e/modified/headers?Last-Modified=" + quote("Fri, 01 Jan 2100 00:00:00 GMT"),
    "/e/modified/x",
    "/e/oldmod/headers?Last-Modified=" + LAST_MODIFIED,
    "/e/daily/x", "/e/off/x", "/e/inherited/x",
    "/e/access/headers?Expires=soon&Cache-Control=private",
    "/e/access/headers?Cache-Control=" + quote("no-store, private"),
    "/e/access/status/404/x", "/e/access/status/302/x", "/e/access/status/500/x",
    "/e/access/status/204/x", "/e/access/status/307/x",
    "/e/var/x?e=2h", "/e/var/x?e=epoch", "/e/var/x?e=off", "/e/var/x?e=bogus", "/e/var/x",
    "/e/if/x", "/e/if/x?x=1",
    # expires on the gateway's own answers
    "/e/return", "/e/return404", "/e/moved", "/e/files/a.txt", "/e/files/missing",
    "/e/static/a.txt",
    # proxy_hide_header, proxy_pass_header, proxy_ignore_headers
    "/h/hide/headers?X-Other=1&X-Kept=2",
    "/h/pass/headers?X-Accel-Expires=60&X-Pad=p&X-Accel-Buffering=no",
    "/h/plain/headers?X-Accel-Expires=60&X-Pad=p&X-Accel-Charset=utf-8",
    "/h/ignore/headers?X-Accel-Expires=60&Set-Cookie=a%3Db",
    # proxy_redirect: Location and Refresh
    "/r/default/status/302/headers?Location=" + quote("http://127.0.0.1:{backend}/next?a=1"),
    "/r/default/status/301/headers?Location=" + quote("http://127.0.0.1:{backend}"),
    "/r/default/status/302/headers?Location=" + quote("/relative"),
    "/r/default/headers?Refresh=" + quote("5; URL=http://127.0.0.1:{backend}/r"),
    "/r/nouri/status/302/headers?Location=" + quote("http://127.0.0.1:{backend}/next"),
    "/r/off/status/302/headers?Location=" + quote("http://127.0.0.1:{backend}/next"),
    "/r/strings/status/302/headers?Location=" + quote("http://old.example/a/b"),
    "/r/strings/status/302/headers?Location=" + quote("http://other.example/c"),
    "/r/strings/status/302/headers?Location=" + quote("http://OLD.example/a"),
    "/r/strings/status/302/headers?Location=" + quote("http://127.0.0.1:{backend}/next"),
    "/r/regex/status/302/headers?Location=" + quote("http://up.internal/p/q"),
    "/r/regex/status/302/headers?Location=" + quote("http://ci/p"),
    "/r/regex/headers?Refresh=" + quote("0;url=http://up.zone/x"),
    "/r/explicit/status/302/headers?Location=" + quote("http://127.0.0.1:{backend}/up/in"),
    "/r/explicit/status/302/headers?Location=" + quote("http://z.example/z1"),
    "/r/relative/status/302/headers?Location=" + quote("http://old.example/a"),
    # proxy_cookie_domain, proxy_cookie_path
    cookie("id=1; Domain=old.example; Path=/app/x; HttpOnly"),
    cookie("id=1; domain=.OLD.example;path=/other"),
    cookie("id=2;  Domain = svc.internal ; Secure"),
    cookie("id=3; Path=/Xabc"),
    cookie("id=4; Domain=keep.example"),
    cookie("novalue; Domain=old.example"),
]

# (method, path, extra fields, body): what the upstream sees
REQUEST_CASES = [
    ("GET", "/m/x?a=1", {}, b""),
    ("PUT", "/m/x", {"Content-Type": "text/plain"}, b"payload"),
    ("GET", "/nh/x", {"X-Client": "c", "Cookie": "k=v"}, b""),
    ("POST", "/nh/x", {"X-Client": "c"}, b"data"),
    ("GET", "/sb/x?a=1", {}, b""),
    ("POST", "/sb/x?a=2", {"Content-Type": "text/plain"}, b"original body"),
    # proxy_intercept_errors
    ("GET", "/i/status/404/x", {}, b""),
    ("GET", "/i/status/502/x", {}, b""),
    ("GET", "/i/status/500/x", {}, b""),
    ("GET", "/i/status/503/x", {}, b""),
    ("GET", "/i/status/302/headers?Location=" + quote("http://elsewhere/"), {}, b""),
    ("GET", "/i/x", {}, b""),
    ("HEAD", "/i/status/404/x", {}, b""),
    ("GET", "/i_off/status/404/x", {}, b""),
]

COMPARED = ("expires", "cache-control", "location", "refresh", "set-cookie", "x-backend",
            "x-other", "x-kept", "x-accel-expires", "x-pad", "x-accel-buffering",
            "x-accel-charset", "x-mine", "content-type", "content-length", "last-modified",
            "vary")


def fetch(port, method, path, headers=None, body=b""):
    """One request on its own connection: (status, {lower name: [values]}, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        fields = dict(headers or {})
        if body:
            fields["Content-Length"] = str(len(body))
        lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"{lines}\r\n".encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    out = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.setdefault(name.strip().lower().decode(), []).append(value.strip().decode())
    if "chunked" in out.get("transfer-encoding", []):
        rest = unchunk(rest)
    return status, out, rest


def unchunk(data):
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 4 + size


def seconds(fields, name):
    values = fields.get(name)
    return None if not values else parsedate_to_datetime(values[0]).timestamp()


def summary(answer):
    """What must be equal: the status, the compared fields (Expires as seconds after Date,
    max-age within a second), our own Server/Date counts, and the body."""
    status, fields, body = answer
    kept = {name: fields.get(name) for name in COMPARED}
    if kept["expires"] and fields.get("date"):
        try:
            # (seconds after Date, the time itself): see same() for how they are compared
            kept["expires"] = [(round(seconds(fields, "expires") - seconds(fields, "date")),
                                seconds(fields, "expires"))]
        except (TypeError, ValueError):
            pass                # an upstream's own text, compared as it is
    control = kept["cache-control"]
    if control and control[0].startswith("max-age="):
        kept["cache-control"] = [("max-age", int(control[0][8:]))]
    if kept["location"]:        # each server runs on its own port
        kept["location"] = [re.sub(r"^http://x:\d+/", "http://x:PORT/", kept["location"][0])]
    if b"<hr><center>" in body:
        # An error page names its server: compare the text with that name out.
        body = body.replace(b"<center>gateway</center>", b"<center>nginx</center>")
        kept["content-length"] = None
    elif body.startswith(b'{"backend"'):
        # What the upstream saw; nginx puts its Content-Length first, we put it last.
        seen = json.loads(body)
        seen["headers"] = sorted(seen["headers"])
        body = seen
    return status, kept, len(fields.get("server", [])), len(fields.get("date", [])), body


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for folder in ("e/files", "e/static", "errors"):
        (root / folder).mkdir(parents=True)
    (root / "e/files/a.txt").write_bytes(b"a file\n")
    (root / "e/static/a.txt").write_bytes(b"static\n")
    (root / "errors/404.txt").write_bytes(b"our 404 page\n")
    (root / "errors/moved.txt").write_bytes(b"moved page\n")
    return root


def same(ours, theirs):
    """Equal summaries; an Expires may be the same time (``modified``, ``@``: set by the file or
    the clock) or the same seconds after Date give or take one, and a max-age may differ by one
    (the two servers answer seconds apart, and a request may straddle a second)."""
    if ours == theirs:
        return True
    mine, other = dict(ours[1]), dict(theirs[1])
    a, b = mine["expires"], other["expires"]
    if a and b and isinstance(a[0], tuple) and isinstance(b[0], tuple):
        (after, at), (their_after, their_at) = a[0], b[0]
        if at == their_at or abs(after - their_after) <= 1:
            mine["expires"] = other["expires"] = None
    a, b = mine["cache-control"], other["cache-control"]
    if a and b and isinstance(a[0], tuple) and isinstance(b[0], tuple) and abs(a[0][1] - b[0][1]) <= 1:
        mine["cache-control"] = other["cache-control"] = None
    return (ours[0], mine, *ours[2:]) == (theirs[0], other, *theirs[2:])


def answers_of(start, backend, site, cases, request_cases):
    port = free_port()
    start(CONFIG.format(port=port, backend=backend.port, root=site), port)
    plain = [summary(fetch(port, "GET", path.replace(quote("{backend}"), str(backend.port))))
             for path in cases]
    sent = [summary(fetch(port, method, path, fields, body))
            for method, path, fields, body in request_cases]
    return plain, sent


def test_header_directives_match_nginx(start_gateway, start_nginx, backend, site):
    ours = answers_of(start_gateway, backend, site, CASES, REQUEST_CASES)
    theirs = answers_of(start_nginx, backend, site, CASES, REQUEST_CASES)
    differ = [(case, a, b) for case, a, b in zip(CASES + REQUEST_CASES, ours[0] + ours[1],
                                                 theirs[0] + theirs[1]) if not same(a, b)]
    assert not differ, "\n".join(f"{case}:\n  gateway {a}\n  nginx   {b}" for case, a, b in differ)
    # The cases reach what they are about.
    results = dict(zip(CASES, theirs[0]))
    assert results["/e/epoch/x"][1]["cache-control"] == ["no-cache"]
    assert results["/e/access/status/404/x"][1]["expires"] is None
    assert any(r[1]["location"] and r[1]["location"][0].startswith("http://x:PORT/r/")
               for r in theirs[0])
    assert any(r[1]["set-cookie"] and "new.example" in r[1]["set-cookie"][0] for r in theirs[0])
    assert theirs[1][0][4]["method"] == "POST"
    assert theirs[1][6][0] == 404 and theirs[1][6][4] == b"our 404 page\n"
