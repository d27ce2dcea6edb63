"""Static file serving: unit tests on a real directory, then side by side with real nginx."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from gateway.config.model import Location, LocationSettings
from gateway.http.mime import content_type, extension
from gateway.http.request import Request
from gateway.http.static import (BytesResponse, ErrorStatus, FileResponse, InternalRedirect,
                                 http_date, parse_http_date, parse_ranges, serve_static)

NGINX = "/usr/sbin/nginx"
SITE = os.path.join(os.path.dirname(__file__), "static_site")
TYPES = {"html": "text/html", "css": "text/css", "txt": "text/plain", "png": "image/png",
         "json": "application/json"}
DEFAULT_TYPE = "application/octet-stream"
NOBODY = 65534


# Helpers --------------------------------------------------------------------

def make_site(base) -> str:
    """The committed site plus what git cannot hold: big file, empty file, links, FIFO."""
    root = os.path.join(str(base), "site")
    shutil.copytree(SITE, root, symlinks=True)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(bytes(range(256)) * 400)
    open(os.path.join(root, "empty.txt"), "wb").close()
    outside = os.path.join(str(base), "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "elsewhere.txt"), "w") as f:
        f.write("outside the root\n")
    os.symlink(os.path.join(outside, "elsewhere.txt"), os.path.join(root, "link-out.txt"))
    os.symlink("alpha.txt", os.path.join(root, "link-in.txt"))
    os.symlink("loop-b", os.path.join(root, "loop-a"))
    os.symlink("loop-a", os.path.join(root, "loop-b"))
    os.mkfifo(os.path.join(root, "pipe"))
    os.mkdir(os.path.join(root, "idxdir"))     # index.html here is a directory
    os.mkdir(os.path.join(root, "idxdir", "index.html"))
    for name in ("sp ace", "q?mark", "caf\u00e9", "50%"):
        os.mkdir(os.path.join(root, name))
    # Same timestamps everywhere, so both servers see fixed dates.
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.utime(path, (1700000000, 1700000000))
    return root


def loc(pattern="/", modifier="", **settings) -> Location:
    """A location with the test types and default_type unless given."""
    settings.setdefault("types", TYPES)
    settings.setdefault("default_type", DEFAULT_TYPE)
    return Location(modifier=modifier, pattern=pattern, settings=LocationSettings(**settings))


def request(target: str, method="GET", headers=(), host="localhost", port=80) -> Request:
    """A Request as the server builds it: URI percent-decoded, args split off."""
    path, _, args = target.partition("?")
    uri = urllib.parse.unquote(path, errors="surrogateescape")
    raw = [(name.lower().encode("latin-1"), name.encode("latin-1"), value.encode("latin-1"))
           for name, value in headers]
    req = Request(method, target, uri, args, 11, raw)
    req.host = host
    req.server_addr = "127.0.0.1"
    req.server_port = port
    req.scheme = "http"
    return req


def header(result, name):
    """One header value of a result, or None."""
    for key, value in getattr(result, "headers", []):
        if key.lower() == name.lower():
            return value
    return None


@pytest.fixture
def site(tmp_path):
    return make_site(tmp_path)


# Plain files ----------------------------------------------------------------

def test_file_headers_in_nginx_order(site):
    result = serve_static(request("/alpha.txt"), loc(root=site))
    st = os.stat(os.path.join(site, "alpha.txt"))
    assert isinstance(result, FileResponse)
    assert result.status == 200
    assert result.headers == [
        ("Content-Type", "text/plain"), ("Content-Length", str(st.st_size)),
        ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("ETag", f'"{int(st.st_mtime):x}-{st.st_size:x}"'), ("Accept-Ranges", "bytes")]
    assert (result.path, result.offset, result.length) == (
        os.path.join(site, "alpha.txt"), 0, st.st_size)


def test_head_gives_the_same_answer(site):
    get = serve_static(request("/alpha.txt"), loc(root=site))
    head = serve_static(request("/alpha.txt", "HEAD"), loc(root=site))
    assert head == get


def test_content_type_ignores_case_and_falls_back(site):
    assert header(serve_static(request("/style.CSS"), loc(root=site)), "Content-Type") == "text/css"
    assert header(serve_static(request("/README"), loc(root=site)),
                  "Content-Type") == DEFAULT_TYPE
    assert header(serve_static(request("/.hidden"), loc(root=site)),
                  "Content-Type") == DEFAULT_TYPE
    upper = loc(root=site, types={"CSS": "text/x-upper"})
    assert header(serve_static(request("/style.CSS"), upper), "Content-Type") == "text/x-upper"


def test_extension_rules():
    assert extension("/a/b.tar.gz") == "gz"
    assert extension("/.profile") == ""
    assert extension("/dir.d/file") == ""
    assert extension("/a/.b") == ""
    assert extension("/a/x..y") == "y"
    assert extension("/file.") == ""
    assert content_type("/x.HTML", {"html": "text/html"}, "text/plain") == "text/html"
    assert content_type("/x", {"": "text/bad"}, "text/plain") == "text/plain"


def test_missing_and_not_a_directory_are_404(site):
    assert serve_static(request("/nope.txt"), loc(root=site)) == ErrorStatus(404)
    assert serve_static(request("/alpha.txt/x"), loc(root=site)) == ErrorStatus(404)
    assert serve_static(request("/nodir/"), loc(root=site)) == ErrorStatus(404)
    assert serve_static(request("/" + "x" * 300), loc(root=site)) == ErrorStatus(404)


def test_hidden_files_and_symlinks_are_served_as_nginx_does(site):
    assert serve_static(request("/.hidden"), loc(root=site)).status == 200
    out = serve_static(request("/link-out.txt"), loc(root=site))
    assert out.status == 200 and out.length == len("outside the root\n")
    assert serve_static(request("/link-in.txt"), loc(root=site)).status == 200
    assert serve_static(request("/loop-a"), loc(root=site)) == ErrorStatus(403)


def test_special_file_is_404(site):
    assert serve_static(request("/pipe"), loc(root=site)) == ErrorStatus(404)


def test_methods(site):
    assert serve_static(request("/alpha.txt", "PUT"), loc(root=site)) == ErrorStatus(405)
    assert serve_static(request("/nope", "DELETE"), loc(root=site)) == ErrorStatus(405)
    assert serve_static(request("/alpha.txt", "POST"), loc(root=site)) == ErrorStatus(405)
    assert serve_static(request("/nope", "POST"), loc(root=site)) == ErrorStatus(404)


def test_etag_off(site):
    result = serve_static(request("/alpha.txt"), loc(root=site, etag=False))
    assert header(result, "ETag") is None
    assert header(result, "Last-Modified") is not None


def test_bad_uri_is_400(site):
    assert serve_static(request("/a%00b"), loc(root=site)) == ErrorStatus(400)


# Directories and index -----------------------------------------------------

def test_directory_without_slash_redirects_absolute(site):
    result = serve_static(request("/docs?x=1&y"), loc(root=site))
    assert result == ErrorStatus(301, [("Location", "http://localhost/docs/?x=1&y")])
    result = serve_static(request("/docs", port=8080), loc(root=site))
    assert result == ErrorStatus(301, [("Location", "http://localhost:8080/docs/")])
    result = serve_static(request("/docs", host=""), loc(root=site))
    assert result == ErrorStatus(301, [("Location", "http://127.0.0.1/docs/")])


def test_redirect_escapes_the_uri(site):
    result = serve_static(request("/sp%20ace"), loc(root=site))
    assert result == ErrorStatus(301, [("Location", "http://localhost/sp%20ace/")])


def test_index_redirects_to_first_existing(site):
    assert serve_static(request("/docs/"), loc(root=site)) == \
        InternalRedirect("/docs/index.html")
    several = loc(root=site, index=["missing.html", "guide.txt", "index.html"])
    assert serve_static(request("/docs/?a=1"), several) == InternalRedirect("/docs/guide.txt")
    absolute = loc(root=site, index=["missing.html", "/fallback.html"])
    assert serve_static(request("/noindex/"), absolute) == InternalRedirect("/fallback.html")


def test_directory_without_index_is_403(site):
    assert serve_static(request("/noindex/"), loc(root=site)) == ErrorStatus(403)
    assert serve_static(request("/noindex/", "PUT"), loc(root=site)) == ErrorStatus(405)


def test_index_that_is_a_directory_still_redirects(site):
    # nginx only stats index candidates; the redirect then lands on a directory.
    assert serve_static(request("/idxdir/"), loc(root=site)) == \
        InternalRedirect("/idxdir/index.html")
    assert serve_static(request("/idxdir/index.html"), loc(root=site)).status == 301


def test_index_below_a_file_is_404(site):
    assert serve_static(request("/alpha.txt/"), loc(root=site)) == ErrorStatus(404)


# try_files -------------------------------------------------------------------

def test_try_files_serves_the_first_existing(site):
    location = loc(root=site, try_files=["$uri.html", "$uri", "=404"])
    result = serve_static(request("/fallback"), location)
    assert result.status == 200 and result.path == os.path.join(site, "fallback.html")
    assert header(result, "Content-Type") == "text/html"     # from the new $uri
    assert serve_static(request("/nothing"), location) == ErrorStatus(404)


def test_try_files_directory_form(site):
    location = loc(root=site, try_files=["$uri", "$uri/", "=418"])
    assert serve_static(request("/docs"), location).status == 301
    assert serve_static(request("/docs/"), location) == InternalRedirect("/docs/index.html")
    files_only = loc(root=site, try_files=["$uri", "=418"])
    assert serve_static(request("/docs"), files_only) == ErrorStatus(418)


def test_try_files_fallback_uri_and_args(site):
    location = loc(root=site, try_files=["$uri", "/fallback.html"])
    assert serve_static(request("/none?a=1"), location) == \
        InternalRedirect("/fallback.html", "")
    location = loc(root=site, try_files=["$uri", "/index.php?q=$uri&$args"])
    assert serve_static(request("/none?a=1"), location) == \
        InternalRedirect("/index.php?q=/none&a=1", "q=/none&a=1")
    named = loc(root=site, try_files=["$uri", "@backend"])
    assert serve_static(request("/none", "POST"), named) == InternalRedirect("@backend")


def test_try_files_runs_before_the_method_check(site):
    named = loc(root=site, try_files=["$uri", "@backend"])
    assert serve_static(request("/none", "PUT"), named) == InternalRedirect("@backend")
    assert serve_static(request("/alpha.txt", "PUT"), named) == ErrorStatus(405)


# alias ---------------------------------------------------------------------

def test_alias_replaces_the_location_prefix(site):
    location = loc("/manual/", alias=os.path.join(site, "docs") + "/")
    result = serve_static(request("/manual/guide.txt"), location)
    assert result.path == os.path.join(site, "docs", "guide.txt")
    assert serve_static(request("/manual/"), location) == InternalRedirect("/manual/index.html")
    exact = loc("/g", "=", alias=os.path.join(site, "docs", "guide.txt"))
    assert serve_static(request("/g"), exact).status == 200


def test_alias_with_try_files(site):
    location = loc("/manual/", alias=os.path.join(site, "docs") + "/",
                   try_files=["$uri", "$uri.txt", "=404"])
    result = serve_static(request("/manual/guide"), location)
    assert result.status == 200 and result.path == os.path.join(site, "docs", "guide.txt")
    assert serve_static(request("/manual/nope"), location) == ErrorStatus(404)


# Conditional requests -------------------------------------------------------

def test_if_modified_since_is_exact(site):
    lm = "Tue, 14 Nov 2023 22:13:20 GMT"
    result = serve_static(request("/alpha.txt", headers=[("If-Modified-Since", lm)]),
                          loc(root=site))
    assert isinstance(result, BytesResponse) and result.status == 304
    assert result.headers == [("Last-Modified", lm), ("ETag", '"6553f100-25"')]
    later = serve_static(request("/alpha.txt", headers=[
        ("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT")]), loc(root=site))
    assert later.status == 200


def test_if_none_match(site):
    for value in ('"6553f100-25"', 'W/"6553f100-25"', '"x", "6553f100-25"', "*"):
        result = serve_static(request("/alpha.txt", headers=[("If-None-Match", value)]),
                              loc(root=site))
        assert result.status == 304, value
    result = serve_static(request("/alpha.txt", headers=[("If-None-Match", '"other"')]),
                          loc(root=site))
    assert result.status == 200
    # Both given: both must say "not modified".
    result = serve_static(request("/alpha.txt", headers=[
        ("If-None-Match", '"6553f100-25"'),
        ("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT")]), loc(root=site))
    assert result.status == 200


def test_preconditions_fail_with_412(site):
    cases = [("If-Match", '"other"'), ("If-Match", 'W/"6553f100-25"'),
             ("If-Unmodified-Since", "Mon, 13 Nov 2023 00:00:00 GMT"),
             ("If-Unmodified-Since", "not a date")]
    for name, value in cases:
        result = serve_static(request("/alpha.txt", headers=[(name, value)]), loc(root=site))
        assert result == ErrorStatus(412), (name, value)
    ok = [("If-Match", '"6553f100-25"'), ("If-Match", "*"),
          ("If-Unmodified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")]
    for name, value in ok:
        result = serve_static(request("/alpha.txt", headers=[(name, value)]), loc(root=site))
        assert result.status == 200, (name, value)


def test_http_dates():
    expected = 784111777
    for text in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                 "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37"):
        assert parse_http_date(text) == expected, text
    for text in ("", "yesterday", "Sun, 06 Nov 1994 24:00:00 GMT",
                 "Sun, 29 Feb 1900 00:00:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT"):
        assert parse_http_date(text) is None, text
    assert http_date(expected) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == 951782400


# Ranges ----------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("0-4", [(0, 5)]),
    ("5-", [(5, 10)]),
    ("-3", [(7, 10)]),
    ("-30", [(0, 10)]),
    ("2-100", [(2, 10)]),
    (" 1 - 2 ", [(1, 3)]),
    ("0-0,2-3", [(0, 1), (2, 4)]),
    ("10-", "unsatisfiable"),
    ("-0", "unsatisfiable"),
    ("5-2", "unsatisfiable"),
    ("abc", "unsatisfiable"),
    ("- 3", "unsatisfiable"),
    ("0-1,", "unsatisfiable"),
    ("0-9,0-9", None),             # more bytes than the file: nginx sends it all
    ("20-30,0-", [(0, 10)]),            # an unsatisfiable range is skipped
    ("99999999999999999999-", "unsatisfiable"),
])
def test_parse_ranges(spec, expected):
    assert parse_ranges(spec, 10) == expected


def test_single_range_is_206(site):
    result = serve_static(request("/alpha.txt", headers=[("Range", "bytes=10-19")]),
                          loc(root=site))
    assert isinstance(result, FileResponse)
    assert (result.status, result.offset, result.length) == (206, 10, 10)
    assert header(result, "Content-Range") == "bytes 10-19/37"
    assert header(result, "Content-Length") == "10"
    assert header(result, "Accept-Ranges") is None


def test_unsatisfiable_range_is_416(site):
    result = serve_static(request("/alpha.txt", headers=[("Range", "bytes=100-")]),
                          loc(root=site))
    assert result == ErrorStatus(416, [("Content-Range", "bytes */37")])


def test_range_ignored_when_if_range_differs(site):
    for value in ('"other"', "Mon, 13 Nov 2023 00:00:00 GMT"):
        result = serve_static(request("/alpha.txt", headers=[
            ("Range", "bytes=0-1"), ("If-Range", value)]), loc(root=site))
        assert result.status == 200
    result = serve_static(request("/alpha.txt", headers=[
        ("Range", "bytes=0-1"), ("If-Range", '"6553f100-25"')]), loc(root=site))
    assert result.status == 206


def test_multiple_ranges_are_multipart(site):
    result = serve_static(request("/alpha.txt", headers=[("Range", "bytes=0-1,5-6")]),
                          loc(root=site))
    assert isinstance(result, BytesResponse) and result.status == 206
    boundary = header(result, "Content-Type").split("boundary=")[1]
    assert result.body == (
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/37\r\n\r\n01"
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/37\r\n\r\n56"
        f"\r\n--{boundary}--\r\n").encode()
    assert header(result, "Content-Length") == str(len(result.body))


def test_range_of_empty_file_is_whole_file(site):
    result = serve_static(request("/empty.txt", headers=[("Range", "bytes=0-")]),
                          loc(root=site))
    assert result.status == 200 and result.length == 0


# Permissions (as an unprivileged user, like an nginx worker) ------------------

def _serve_as_nobody(target, location):
    """serve_static in a child process that dropped root, so permissions apply."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            data = pickle.dumps(serve_static(request(target), location))
            os.write(write_fd, data)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks))


@pytest.fixture
def open_site():
    """A site under a world-searchable directory (pytest's tmp_path is 0700)."""
    import tempfile
    base = tempfile.mkdtemp(prefix="static-test-")
    try:
        os.chmod(base, 0o755)
        root = make_site(base)
        os.chmod(os.path.join(root, ".hidden"), 0o000)
        os.chmod(os.path.join(root, "noindex"), 0o000)
        os.mkdir(os.path.join(root, "locked"))
        with open(os.path.join(root, "locked", "index.html"), "w") as f:
            f.write("locked\n")
        os.chmod(os.path.join(root, "locked"), 0o600)     # readable, not searchable
        yield root
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_permission_denied_is_403(open_site):
    location = loc(root=open_site)
    assert _serve_as_nobody("/.hidden", location) == ErrorStatus(403)
    assert _serve_as_nobody("/noindex/readme.txt", location) == ErrorStatus(403)
    assert _serve_as_nobody("/locked/", location) == ErrorStatus(403)
    assert _serve_as_nobody("/alpha.txt", location).status == 200


# Side by side with nginx -------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_locations(root: str) -> list[tuple[str, Location]]:
    """The same locations as nginx config text and as model objects."""
    docs = os.path.join(root, "docs")
    return [
        ("location / { index index.html; }", loc("/", root=root)),
        ("location /tf/ { try_files $uri $uri.html $uri/ /fallback.html; }",
         loc("/tf/", root=root, try_files=["$uri", "$uri.html", "$uri/", "/fallback.html"])),
        ("location /code/ { try_files $uri =418; }",
         loc("/code/", root=root, try_files=["$uri", "=418"])),
        ("location /named/ { try_files $uri @fallback; }",
         loc("/named/", root=root, try_files=["$uri", "@fallback"])),
        ("location @fallback { try_files /fallback.html =404; }",
         loc("fallback", "@", root=root, try_files=["/fallback.html", "=404"])),
        (f"location /manual/ {{ alias {docs}/; }}", loc("/manual/", alias=docs + "/")),
        (f"location /slashless/ {{ alias {docs}; }}", loc("/slashless/", alias=docs)),
        (f"location /atf/ {{ alias {docs}/; try_files $uri $uri.txt =404; }}",
         loc("/atf/", alias=docs + "/", try_files=["$uri", "$uri.txt", "=404"])),
        (f"location /noetag/ {{ alias {root}/; etag off; }}",
         loc("/noetag/", alias=root + "/", etag=False)),
        ("location /idx/ { index nothing.html /fallback.html; }",
         loc("/idx/", root=root, index=["nothing.html", "/fallback.html"])),
    ]


def route(locations, uri: str) -> Location:
    """Longest-prefix match over the test locations, as the server's router would."""
    if uri.startswith("@"):
        return next(model for _, model in locations if model.modifier == "@"
                    and "@" + model.pattern == uri)
    best = None
    for _, model in locations:
        if model.modifier == "" and uri.startswith(model.pattern):
            if best is None or len(model.pattern) > len(best.pattern):
                best = model
    return best


def answer(locations, req):
    """serve_static plus the server's share: follow internal redirects (at most 10)."""
    location = route(locations, req.uri)
    for _ in range(10):
        result = serve_static(req, location)
        if not isinstance(result, InternalRedirect):
            return result
        if result.uri.startswith("@"):
            location = route(locations, result.uri)   # the URI stays
            continue
        if result.args is None:
            uri, args = result.uri, req.args
        else:
            uri, args = result.uri.partition("?")[0], result.args
        new = Request(req.method, req.request_uri, uri, args, req.version, req.headers)
        new.host, new.server_addr, new.server_port, new.scheme = (
            req.host, req.server_addr, req.server_port, req.scheme)
        req = new
        location = route(locations, uri)
    raise AssertionError("redirect cycle")


class Nginx:
    """A real nginx serving ``root`` with ``locations``; workers run as ``user``."""

    def __init__(self, base, root, locations, user="root root"):
        self.base, self.root, self.locations, self.user = base, root, locations, user
        self.port = free_port()
        self.proc = None

    def config(self) -> str:
        base = self.base
        blocks = "\n        ".join(text for text, _ in self.locations)
        types = " ".join(f"{mime} {ext};" for ext, mime in TYPES.items())
        return f"""
user {self.user};
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    types {{ {types} }}
    default_type {DEFAULT_TYPE};
    server {{
        listen 127.0.0.1:{self.port};
        server_name localhost;
        root {self.root};
        {blocks}
    }}
}}
"""

    def start(self):
        conf = os.path.join(self.base, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        self.proc = subprocess.Popen([NGINX, "-p", str(self.base), "-c", conf,
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def nginx_site(tmp_path_factory):
    """A real nginx (as root, like our tests) serving a fresh copy of the site."""
    base = tmp_path_factory.mktemp("nginx-static")
    root = make_site(base)
    server = Nginx(str(base), root, nginx_locations(root))
    try:
        server.start()
        yield server.port, server.locations
    finally:
        server.stop()


def fetch(port: int, method: str, target: str, headers=(), http10=False):
    """One exchange on a raw socket: (status, {lower name: value}, body).

    HTTP/1.1 with a Host header, or HTTP/1.0 without one.
    """
    if http10:
        lines = [f"{method} {target} HTTP/1.0"]
    else:
        lines = [f"{method} {target} HTTP/1.1", f"Host: localhost:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, body


COMPARED = ("content-type", "content-length", "last-modified", "etag", "location",
            "content-range", "accept-ranges")

LM = "Tue, 14 Nov 2023 22:13:20 GMT"
ALPHA_ETAG = '"6553f100-25"'

SIDE_BY_SIDE = [
    ("GET", "/alpha.txt", ()),
    ("HEAD", "/alpha.txt", ()),
    ("GET", "/style.CSS", ()),
    ("GET", "/README", ()),
    ("GET", "/img/pixels.png", ()),
    ("GET", "/big.bin", ()),
    ("GET", "/empty.txt", ()),
    ("GET", "/data.json", ()),
    ("GET", "/.hidden", ()),
    ("GET", "/a%20b.txt", ()),
    ("GET", "/caf%C3%A9.txt", ()),
    ("GET", "/100%25.txt", ()),
    ("GET", "/link-out.txt", ()),
    ("GET", "/loop-a", ()),
    ("GET", "/pipe", ()),
    ("GET", "/missing.txt", ()),
    ("GET", "/alpha.txt/below", ()),
    ("GET", "/", ()),
    ("HEAD", "/", ()),
    ("GET", "/docs", ()),
    ("GET", "/docs?x=1&y=2", ()),
    ("HEAD", "/docs", ()),
    ("GET", "/docs/", ()),
    ("GET", "/sp%20ace", ()),
    ("GET", "/q%3Fmark?a=b", ()),
    ("GET", "/caf%C3%A9", ()),
    ("GET", "/50%25", ()),
    ("GET", "/%2E%68idden", ()),
    ("GET", "/docs/%69ndex.html", ()),
    ("GET", "/alpha%00.txt", ()),
    ("GET", "/noindex/", ()),
    ("GET", "/nodir/", ()),
    ("GET", "/idxdir/", ()),
    ("GET", "/alpha.txt/", ()),
    ("POST", "/alpha.txt", ()),
    ("POST", "/missing.txt", ()),
    ("POST", "/docs/", ()),
    ("PUT", "/alpha.txt", ()),
    ("DELETE", "/docs/", ()),
    ("PATCH", "/missing", ()),
    # conditionals
    ("GET", "/alpha.txt", (("If-Modified-Since", LM),)),
    ("HEAD", "/alpha.txt", (("If-Modified-Since", LM),)),
    ("GET", "/alpha.txt", (("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT"),)),
    ("GET", "/alpha.txt", (("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT"),)),
    ("GET", "/alpha.txt", (("If-Modified-Since", "Tue Nov 14 22:13:20 2023"),)),
    ("GET", "/alpha.txt", (("If-Modified-Since", "garbage"),)),
    ("GET", "/alpha.txt", (("If-None-Match", ALPHA_ETAG),)),
    ("GET", "/alpha.txt", (("If-None-Match", "W/" + ALPHA_ETAG),)),
    ("GET", "/alpha.txt", (("If-None-Match", '"a", ' + ALPHA_ETAG),)),
    ("GET", "/alpha.txt", (("If-None-Match", "*"),)),
    ("GET", "/alpha.txt", (("If-None-Match", '"nope"'),)),
    ("GET", "/alpha.txt", (("If-None-Match", ALPHA_ETAG), ("If-Modified-Since", LM))),
    ("GET", "/alpha.txt", (("If-None-Match", ALPHA_ETAG),
                           ("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT"))),
    ("GET", "/alpha.txt", (("If-Match", '"nope"'),)),
    ("GET", "/alpha.txt", (("If-Match", ALPHA_ETAG),)),
    ("GET", "/alpha.txt", (("If-Match", "W/" + ALPHA_ETAG),)),
    ("GET", "/alpha.txt", (("If-Unmodified-Since", "Mon, 13 Nov 2023 00:00:00 GMT"),)),
    ("GET", "/alpha.txt", (("If-Unmodified-Since", LM),)),
    ("GET", "/alpha.txt", (("If-Unmodified-Since", "bogus"),)),
    ("GET", "/noetag/alpha.txt", ()),
    ("GET", "/noetag/alpha.txt", (("If-None-Match", ALPHA_ETAG),)),
    ("GET", "/noetag/alpha.txt", (("If-None-Match", "*"),)),
    ("GET", "/noetag/alpha.txt", (("If-Match", ALPHA_ETAG),)),
    ("GET", "/noetag/alpha.txt", (("Range", "bytes=1-2"), ("If-Range", ALPHA_ETAG))),
    # ranges
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"),)),
    ("HEAD", "/alpha.txt", (("Range", "bytes=0-4"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=30-"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=-5"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=-500"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=5-1000"),)),
    ("GET", "/alpha.txt", (("Range", "BYTES=1-2"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=100-200"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=x"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=5-2"),)),
    ("GET", "/alpha.txt", (("Range", "items=0-1"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=0-1,4-6"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=0-1,100-200"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=0-36,0-36"),)),
    ("GET", "/big.bin", (("Range", "bytes=1000-1999,50000-"),)),
    ("GET", "/empty.txt", (("Range", "bytes=0-"),)),
    ("GET", "/empty.txt", (("Range", "bytes=1-"),)),
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"), ("If-Range", ALPHA_ETAG))),
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"), ("If-Range", '"other"'))),
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"), ("If-Range", LM))),
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"),
                           ("If-Range", "Wed, 15 Nov 2023 00:00:00 GMT"))),
    ("GET", "/alpha.txt", (("Range", "bytes=0-4"), ("If-None-Match", ALPHA_ETAG))),
    ("GET", "/alpha.txt", (("Range", "bytes=100-"), ("If-Match", '"nope"'))),
    # try_files, alias, named locations, index variants
    ("GET", "/tf/page", ()),
    ("GET", "/tf/page.html", ()),
    ("GET", "/tf/", ()),
    ("GET", "/tf", ()),
    ("GET", "/tf/none?a=1", ()),
    ("PUT", "/tf/none", ()),
    ("GET", "/code/none", ()),
    ("GET", "/code/", ()),
    ("GET", "/named/none", ()),
    ("GET", "/manual/guide.txt", ()),
    ("GET", "/manual/", ()),
    ("GET", "/manual/nope", ()),
    ("GET", "/slashless/", ()),
    ("GET", "/slashless/guide.txt", ()),
    ("GET", "/atf/guide", ()),
    ("GET", "/atf/nope", ()),
    ("GET", "/noetag", ()),
    ("GET", "/noetag/docs", ()),
    ("GET", "/idx/", ()),
]


def _case_id(case):
    method, target, headers = case
    extra = ",".join(f"{n}={v}" for n, v in headers)
    return f"{method} {target} {extra}".strip()


@pytest.mark.nginx
@pytest.mark.parametrize("case", SIDE_BY_SIDE, ids=[_case_id(c) for c in SIDE_BY_SIDE])
def test_same_answer_as_nginx(nginx_site, case):
    port, locations = nginx_site
    method, target, headers = case
    status, theirs, body = fetch(port, method, target, headers)

    path, sep, args = target.partition("?")
    # nginx normalises "/x/../y" before routing; our server does the same.
    path = os.path.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
    req = request(path + sep + args, method, headers, port=port)
    ours = answer(locations, req)

    assert ours.status == status, (ours, status, theirs)
    if isinstance(ours, ErrorStatus):
        # The server renders the page (Content-Type/Length); nginx drops file headers.
        for name in ("last-modified", "etag", "accept-ranges"):
            assert name not in theirs
        mine = {k.lower(): v for k, v in ours.headers}
        for name in ("location", "content-range"):
            assert mine.get(name) == theirs.get(name), name
        return

    mine = {k.lower(): v for k, v in ours.headers}
    if isinstance(ours, FileResponse):
        with open(ours.path, "rb") as f:
            f.seek(ours.offset)
            our_body = f.read(ours.length)
    else:
        our_body = ours.body
    if method == "HEAD":
        our_body = b""
    if status == 304:
        # nginx's 304 has no Content-Type/Length; nor do we, the server adds none.
        assert "content-type" not in theirs and "content-length" not in theirs
    boundary = re.search(r"boundary=(\d+)", theirs.get("content-type", ""))
    if boundary:
        ours_boundary = re.search(r"boundary=(\d+)", mine["content-type"]).group(1)
        our_body = our_body.replace(ours_boundary.encode(), boundary.group(1).encode())
        mine["content-type"] = mine["content-type"].replace(ours_boundary, boundary.group(1))
    for name in COMPARED:
        if status == 304 and name == "content-length":
            continue
        assert mine.get(name) == theirs.get(name), name
    assert our_body == body


@pytest.mark.nginx
def test_redirect_without_host_uses_the_local_address(nginx_site):
    port, locations = nginx_site
    status, theirs, _ = fetch(port, "GET", "/docs", http10=True)
    req = request("/docs", host="", port=port)
    req.version = 10
    ours = answer(locations, req)
    assert (ours.status, dict(ours.headers)["Location"]) == (status, theirs["location"])


@pytest.mark.nginx
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_permissions_as_nginx_worker(open_site, tmp_path):
    """nginx's worker as nobody and our code as nobody answer the same."""
    location = loc("/", root=open_site)
    server = Nginx(str(tmp_path), open_site,
                   [("location / { index index.html; }", location)], user="nobody nogroup")
    try:
        server.start()
        for target in ("/.hidden", "/noindex/readme.txt", "/noindex/", "/locked/",
                       "/locked", "/alpha.txt", "/docs/guide.txt"):
            status, _, _ = fetch(server.port, "GET", target)
            assert _serve_as_nobody(target, location).status == status, target
    finally:
        server.stop()


def test_root_trailing_slash_is_dropped(site):
    result = serve_static(request("/alpha.txt"), loc(root=site + "/"))
    assert result.path == os.path.join(site, "alpha.txt")
