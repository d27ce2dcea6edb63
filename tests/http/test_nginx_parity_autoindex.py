"""autoindex side by side with real nginx: the same directory tree (names cut at 50 bytes,
escaped, hidden ones, symlinks, a FIFO, sizes around every unit boundary, fixed mtimes) listed
as html, xml, json and jsonp gives the same status, framing fields and the very same body."""

import os
import socket

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
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /list/ {{ autoindex on; }}
        location /approx/ {{ alias {root}/list/; autoindex on; autoindex_exact_size off; }}
        location /local/ {{ alias {root}/list/; autoindex on; autoindex_localtime on; }}
        location /json/ {{ alias {root}/list/; autoindex on; autoindex_format json; }}
        location /jsonp/ {{ alias {root}/list/; autoindex on; autoindex_format jsonp; }}
        location /xml/ {{ alias {root}/list/; autoindex on; autoindex_format xml; }}
        location /off/ {{ alias {root}/list/; }}
        location /indexed/ {{ autoindex on; }}
        location /gz/ {{ alias {root}/list/; autoindex on; gzip on; gzip_vary on; }}
        location /inherit/ {{
            autoindex on; autoindex_format json;
            location /inherit/sub/ {{ alias {root}/list/; }}
        }}
    }}
}}
"""

MTIME = 1_600_000_000        # Sun, 13 Sep 2020 12:26:40 GMT

NAMES = [
    "a.txt", "B.txt", "_under", "~tilde", "with space.txt", "quote\"amp&lt<gt>.txt",
    "percent%25.txt", "plus+equals=.txt", "x" * 50, "y" * 51, "z" * 49, "<" * 60,
    "caf\u00e9.txt", "\u00e9" * 30, "tab\there", "new\nline",
]
SIZES = {"size0": 0, "size9999": 9999, "size10000": 10000, "k511": 20 * 1024 + 511,
         "k512": 20 * 1024 + 512, "kmax": 1024 * 1024 - 1, "sizeM": 1024 * 1024,
         "m-half": 1024 * 1024 * 3 // 2 - 1, "m+half": 1024 * 1024 * 3 // 2,
         "sizeG": 3 * 1024 ** 3 + 1024 ** 3 // 2}


def make_tree(root):
    top = root / "list"
    top.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        (top / name).write_bytes(b"x" * i)
    for name, size in SIZES.items():
        with open(top / name, "wb") as handle:
            handle.truncate(size)              # sparse: no disk used
    (top / ".hidden").write_text("no")
    for name in ("sub", "dir \u00e9", "d" * 50, "e" * 49, "f" * 55, "..dots"):
        (top / name).mkdir()
    (top / "sub" / "inner.txt").write_text("inner\n")
    os.symlink("sub", top / "link-to-dir")
    os.symlink("a.txt", top / "link-to-file")
    os.symlink("missing", top / "dangling")
    os.mkfifo(top / "fifo")
    (root / "indexed").mkdir()
    (root / "indexed" / "index.html").write_text("the index\n")
    (root / "indexed" / "plain").mkdir()
    for path in sorted(top.rglob("*"), reverse=True):
        os.utime(path, (MTIME, MTIME + len(path.name) * 3607), follow_symlinks=False)
    os.utime(top, (MTIME, MTIME))


CASES = [
    ("GET", "/list/", 11), ("GET", "/list/sub/", 11), ("GET", "/list/dir%20%C3%A9/", 11),
    ("GET", "/list/" + "f" * 55 + "/", 11),
    ("HEAD", "/list/", 11), ("GET", "/list/", 10), ("POST", "/list/", 11),
    ("GET", "/list/sub", 11), ("GET", "/list/missing/", 11), ("GET", "/list/link-to-dir/", 11),
    ("GET", "/approx/", 11), ("GET", "/local/", 11), ("GET", "/json/", 11),
    ("GET", "/json/sub/", 11), ("GET", "/xml/", 11),
    ("GET", "/jsonp/?callback=my.cb_1", 11), ("GET", "/jsonp/", 11),
    ("GET", "/jsonp/?a=1&CALLBACK=up", 11), ("GET", "/jsonp/?callback=bad-name", 11),
    ("GET", "/jsonp/?callback=" + "c" * 129, 11), ("GET", "/jsonp/?xcallback=1", 11),
    ("GET", "/off/", 11), ("GET", "/indexed/", 11), ("GET", "/indexed/plain/", 11),
    ("GET", "/gz/", 11), ("GET", "/gz/", 10), ("GET", "/inherit/sub/", 11),
]


def fetch(port, method, target, version):
    lines = [f"{method} {target} HTTP/1.{version - 10}", "Host: x", "Connection: close",
             "Accept-Encoding: gzip"]
    if method == "POST":
        lines.append("Content-Length: 0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
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
        body = dechunk(body)
    if fields.get("content-encoding") == "gzip":
        import zlib
        body = zlib.decompress(body, 31)
    if b"<hr><center>" in body:
        body = body.split(b"<hr><center>")[0]      # error pages name their server
    # (Content-Length is left out: error pages name their server, a different length.)
    kept = {k: fields.get(k) for k in ("content-type", "transfer-encoding", "location",
                                        "content-encoding", "vary", "connection")}
    if kept["location"]:
        kept["location"] = kept["location"].replace(f":{port}/", ":PORT/")
    return int(status_line.split()[1]), kept, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


def test_autoindex_matches_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    make_tree(root)
    (root / "inherit").mkdir()
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(port=port, root=root), port)
        answers[name] = [fetch(port, *case) for case in CASES]
    for case, got, want in zip(CASES, answers["gateway"], answers["nginx"]):
        assert got == want, case
    listing = answers["nginx"][0][2].decode("latin-1")
    # What the module is for: directories first, hidden names skipped, long names cut.
    assert listing.index('href="sub/"') < listing.index('href="B.txt"') < listing.index('"a.txt"')
    assert ".hidden" not in listing and "..dots" not in listing and "y" * 47 + "..&gt;</a>" in listing
    assert answers["nginx"][CASES.index(("GET", "/list/sub", 11))][0] == 301


def test_large_directory_streams(start_gateway, tmp_path):
    """A directory of many entries is sent in pieces, and completely."""
    root = tmp_path / "big"
    (root / "many").mkdir(parents=True)
    for i in range(3000):
        (root / "many" / f"file-{i:05d}.txt").write_text("x")
    port = free_port()
    start_gateway(CONFIG.format(port=port, root=root).replace("location /list/",
                                                              "location /many/"), port)
    status, fields, body = fetch(port, "GET", "/many/", 11)
    assert status == 200 and fields["transfer-encoding"] == "chunked"
    assert body.count(b'<a href="file-') == 3000 and body.endswith(b"</html>\r\n")
