"""gzip and gzip_static side by side with real nginx: the same config and requests give the same
status, Content-Encoding, Vary, framing, ETag and body, and with the same zlib and level the
same compressed bytes."""

import gzip as gzip_format
import socket
import time

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

# nginx's workers read the files under pytest's folder, which only root may enter.
CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    log_format ratio "$request_uri $gzip_ratio";
    access_log {log} ratio;
    server_tokens off;     # the error pages' bodies are compared
    default_type text/plain;
    types {{ text/html html; text/css css; text/plain txt; application/javascript js; }}
    gzip on;
    gzip_vary on;
    gzip_comp_level 5;
    gzip_min_length 100;
    gzip_types text/css text/plain application/json;
    server {{
        listen 127.0.0.1:{port};
        location /up/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /any/ {{
            gzip_proxied any;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /proxied/ {{
            gzip_proxied expired no-cache no-store private no_last_modified no_etag auth;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /cache/ {{
            gzip_proxied no-cache;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /tags/ {{
            gzip_proxied no_etag no_last_modified;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /off/ {{
            gzip off;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /all/ {{
            gzip_types *;
            gzip_min_length 0;
            gzip_comp_level 1;
            gzip_vary off;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /picky/ {{
            gzip_disable "Wget|^curl" msie6;
            gzip_http_version 1.0;
            gzip_window 4k;
            gzip_hash 2k;
            gzip_comp_level 9;
            proxy_pass http://127.0.0.1:{backend}/;
        }}
        location /rw/ {{
            rewrite ^/rw/(.*)$ /$1 break;
            proxy_pass http://127.0.0.1:{backend};
        }}
        location /try/ {{ root {root}; try_files $uri @up; }}
        location @up {{ proxy_pass http://127.0.0.1:{backend}; }}
        location /files/ {{ root {root}; }}
        location /static/ {{ root {root}; gzip_static on; }}
        location /always/ {{ root {root}; gzip_static always; gzip off; }}
        location = /said {{ return 200 "{said}"; }}
        location = /short {{ return 200 "short"; }}
        location = /gone {{ return 404; }}
    }}
}}
"""

SAID = "a return body long enough to be compressed, " * 8
TEXT = "/text?n=5000&type=text/plain"
CSS = "/text?n=30000&type=text/css%3B%20charset%3Dutf-8&ETag=%22v1%22"
GZ = {"Accept-Encoding": "gzip, deflate"}
VIA = {"Accept-Encoding": "gzip", "Via": "1.1 cache"}

CASES = [
    # Accept-Encoding variants
    ("GET", "/up" + TEXT, GZ, 11),
    ("GET", "/up" + TEXT, {}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "identity"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "gzip;q=0"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "deflate, gzip;q=0.5"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "deflate, gzip; q=0.000"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "x-gzip"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "GZIP"}, 11),
    ("GET", "/up" + TEXT, {"Accept-Encoding": "gzip;q=1.0001"}, 11),
    # framing: Content-Length and chunked upstreams, HTTP/1.1 and HTTP/1.0 clients, HEAD
    ("GET", "/up" + CSS, GZ, 11),
    ("GET", "/up" + CSS + "&chunked=7", GZ, 11),
    ("GET", "/up" + CSS + "&chunked=7", GZ, 10),
    ("GET", "/up" + TEXT, GZ, 10),
    ("HEAD", "/up" + TEXT, GZ, 11),
    # what is not compressed: type, length, status, encoded, ranges
    ("GET", "/up/text?n=5000&type=image/png", GZ, 11),
    ("GET", "/up/text?n=99&type=text/plain", GZ, 11),
    ("GET", "/up/text?n=100&type=text/plain", GZ, 11),
    ("GET", "/up/text?n=50&type=text/plain&chunked=2", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&status=404", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&status=403", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&status=500", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&status=206&Content-Range=bytes%200-4999/9000",
     GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&Content-Encoding=br", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&Accept-Ranges=bytes&ETag=W/%22w%22", GZ, 11),
    ("GET", "/up/text?n=5000&type=text/plain&ETag=unquoted", GZ, 11),
    ("GET", "/off" + TEXT, GZ, 11),
    ("GET", "/all/text?n=0&type=application/x-anything", GZ, 11),
    ("GET", "/all/text?n=20000&type=application/octet-stream&chunked=3", GZ, 11),
    # gzip_proxied, decided on the request's Via
    ("GET", "/up" + TEXT, VIA, 11),
    ("GET", "/any" + TEXT, VIA, 11),
    ("GET", "/proxied" + TEXT, VIA, 11),
    ("GET", "/proxied" + TEXT + "&Expires=Thu,%2001%20Jan%201970%2000:00:00%20GMT", VIA, 11),
    ("GET", "/proxied" + TEXT + "&Expires=Fri,%2001%20Jan%202100%2000:00:00%20GMT", VIA, 11),
    ("GET", "/proxied" + TEXT + "&Expires=soon", VIA, 11),
    ("GET", "/cache" + TEXT + "&Cache-Control=no-cache", VIA, 11),
    ("GET", "/cache" + TEXT + "&Cache-Control=max-age=0,%20no-cache=%22Set-Cookie%22", VIA, 11),
    ("GET", "/cache" + TEXT + "&Cache-Control=private", VIA, 11),
    ("GET", "/cache" + TEXT, VIA, 11),
    ("GET", "/tags" + TEXT, VIA, 11),
    ("GET", "/tags" + TEXT + "&ETag=%22e%22", VIA, 11),
    ("GET", "/tags" + TEXT + "&Last-Modified=Thu,%2001%20Jan%201970%2000:00:00%20GMT", VIA, 11),
    ("GET", "/proxied" + TEXT, dict(VIA, Authorization="Bearer x"), 11),
    # gzip_disable, gzip_http_version, gzip_window/gzip_hash
    ("GET", "/picky" + TEXT, dict(GZ, **{"User-Agent": "curl/7.88"}), 11),
    ("GET", "/picky" + TEXT, dict(GZ, **{"User-Agent": "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"}), 11),
    ("GET", "/picky" + TEXT, dict(GZ, **{"User-Agent": "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"}), 11),
    ("GET", "/picky" + TEXT, dict(GZ, **{"User-Agent": "Firefox wget"}), 10),
    ("GET", "/up" + TEXT, GZ, 10),
    # proxied after a rewrite, and from a named location after try_files
    ("GET", "/rw" + TEXT, GZ, 11),
    ("GET", "/try" + TEXT, GZ, 11),
    ("GET", "/try" + TEXT, {}, 10),
    # static files, gzip_static, return bodies and error pages
    ("GET", "/files/page.html", GZ, 11),
    ("GET", "/files/page.html", {}, 11),
    ("GET", "/files/page.html", dict(GZ, Range="bytes=0-9"), 11),
    ("GET", "/files/page.html", {"Range": "bytes=0-9"}, 11),
    ("GET", "/files/tiny.txt", GZ, 11),
    ("GET", "/files/app.js", GZ, 11),
    ("GET", "/files/missing.txt", GZ, 11),
    ("HEAD", "/files/page.html", GZ, 11),
    ("GET", "/static/page.html", GZ, 11),
    ("GET", "/static/page.html", {}, 11),
    ("GET", "/static/page.html", dict(GZ, Range="bytes=0-9"), 11),
    ("GET", "/static/style.css", GZ, 11),
    ("GET", "/static/style.css", {}, 11),
    ("GET", "/always/page.html", {}, 11),
    ("GET", "/always/style.css", {}, 11),
    ("GET", "/said", GZ, 11),
    ("GET", "/said", GZ, 10),
    ("GET", "/said", {}, 11),
    ("GET", "/short", GZ, 11),
    ("GET", "/gone", GZ, 11),
]


def fetch(port, method, path, headers, version, raw=False):
    """One request on its own connection; the answer's head fields and body, un-chunked
    (``raw``: as received, up to a reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"{method} {path} HTTP/1.{version % 10}\r\nHost: x\r\nConnection: close\r\n"
                     f"{lines}\r\n".encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower().decode(), []).append(value.strip().decode())
    if "chunked" in fields.get("transfer-encoding", []) and not raw:
        body = unchunk(body)
    return status, fields, body


def unchunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 4 + size


def summary(answer):
    """What must be the same on both: everything but Date, Server and the bytes' identity."""
    status, fields, body = answer
    encoded = fields.get("content-encoding") == ["gzip"]
    plain = gzip_format.decompress(body) if encoded and body else body
    if b"<hr><center>" in plain:
        # An error page names its server: compare the text with that name out, not the bytes.
        plain, body = plain.replace(b"<center>gateway</center>", b"<center>nginx</center>"), None
    return (status, fields.get("content-encoding"), fields.get("vary"),
            "content-length" in fields, fields.get("transfer-encoding"), fields.get("etag"),
            fields.get("accept-ranges"), fields.get("content-range"), plain, body)


def read_log(path, count):
    """The access log's lines once all ``count`` are there (the gateway flushes it 4 times a second)."""
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.05)
    return lines


@pytest.fixture
def site(tmp_path):
    from tests.support.echo_backend import text_body
    root = tmp_path / "site"
    for folder in ("files", "static", "always"):
        (root / folder).mkdir(parents=True)
        (root / folder / "page.html").write_bytes(text_body(20000))
        (root / folder / "tiny.txt").write_bytes(b"tiny\n")
        (root / folder / "app.js").write_bytes(text_body(3000))
        (root / folder / "style.css").write_bytes(text_body(4000))
    for folder in ("static", "always"):
        # Precompressed beside the original (a different level, to tell them apart).
        (root / folder / "page.html.gz").write_bytes(gzip_format.compress(text_body(20000), 9, mtime=0))
    return root


def test_gzip_matches_nginx(start_gateway, start_nginx, backend, site, tmp_path):
    answers = {}
    ratios = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        log = tmp_path / f"{name}-ratio.log"
        start(CONFIG.format(port=port, backend=backend.port, root=site, said=SAID, log=log), port)
        answers[name] = []
        for method, path, headers, version in CASES:
            try:
                answers[name].append(summary(fetch(port, method, path, headers, version)))
            except Exception as exc:
                raise AssertionError(f"{name}: {method} {path} {headers} {version}") from exc
        ratios[name] = log
    for case, ours, theirs in zip(CASES, answers["gateway"], answers["nginx"]):
        assert ours == theirs, case
    # $gzip_ratio, as each logged it ("-" where nothing was compressed).
    # (Not of error pages: their texts name different servers.)
    logged = {name: [line for line in read_log(log, len(CASES))
                     if not line.startswith(("/files/missing.txt ", "/gone "))]
              for name, log in ratios.items()}
    assert logged["gateway"] == logged["nginx"]
    assert any(line.split()[-1] not in ("-", "0.00") for line in logged["nginx"])
    compressed = [a for a in answers["nginx"] if a[1] == ["gzip"]]
    plain = [a for a in answers["nginx"] if a[1] is None]
    assert len(compressed) > 20 and len(plain) > 20      # the cases cover both outcomes
