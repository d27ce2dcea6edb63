"""The routers pick what real nginx picks for the same configuration."""

import socket

import pytest

from gateway.config.model import Listen, Location, LocationSettings, ProxyPass, Server
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

MAIN = """pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
{servers}
}}
"""


def fetch(port, target, host=None):
    """Send one raw HTTP request to 127.0.0.1:port; return (status, body)."""
    head = f"GET {target} HTTP/1.1\r\nConnection: close\r\n"
    head = head + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
    if host is None:
        head = head.replace("HTTP/1.1", "HTTP/1.0", 1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


class Tree:
    """Locations built once as model objects and once as nginx config text."""

    def __init__(self):
        self.names = {}
        self.dead_port = free_port()

    def loc(self, modifier, pattern, *children, passed=False):
        settings = LocationSettings()
        if passed:      # proxied content: nginx auto-redirects "/name" to "/name/"
            settings.proxy_pass = ProxyPass(f"http://127.0.0.1:{self.dead_port}",
                                            f"127.0.0.1:{self.dead_port}", None, "")
        location = Location(modifier, pattern, settings, list(children))
        self.names[id(location)] = f"L{len(self.names)}"
        return location

    def text(self, locations, indent="        "):
        out = []
        for location in locations:
            name = self.names[id(location)]
            modifier = location.modifier + " " if location.modifier else ""
            # "return" runs before the content phase, so a proxied location
            # still answers with its name; the proxy_pass only sets auto_redirect.
            proxy = location.settings.proxy_pass
            passing = f"{indent}    proxy_pass {proxy.url};\n" if proxy is not None else ""
            out.append(f'{indent}location {modifier}"{location.pattern}" {{\n{passing}'
                       f"{self.text(location.children, indent + '    ')}"
                       f'{indent}    return 200 "{name}";\n{indent}}}\n')
        return "".join(out)


def test_location_choice_matches_nginx(router, start_nginx, tmp_path):
    t = Tree()
    locations = [
        t.loc("", "/"),
        t.loc("=", "/exact"),
        t.loc("", "/exact"),
        t.loc("^~", "/static/", t.loc("~", r"\.css$"), t.loc("", "/static/deep/")),
        t.loc("", "/app/", t.loc("", "/app/api/", t.loc("~", r"/v\d+/")), t.loc("^~", "/app/raw/"),
              t.loc("~*", r"\.JSON$")),
        t.loc("~", r"\.php$", t.loc("~", r"/admin/")),
        t.loc("~*", r"\.(gif|jpg)$"),
        t.loc("~", r"^/app/.*\.txt$"),
        t.loc("", "/docs"),
        t.loc("", "/api/", passed=True),
        t.loc("=", "/exact-api/", passed=True),
        t.loc("", "/app/svc/", passed=True),
        t.loc("", "/named/", passed=True),
        t.loc("", "/named"),
        t.loc("~", r"^/rx", t.loc("~", r"^/rx/in/", passed=True)),
    ]
    port = free_port()
    server_text = (f"    server {{\n        listen 127.0.0.1:{port};\n"
                   f"{t.text(locations)}    }}")
    nginx = start_nginx(MAIN.format(dir=tmp_path, servers=server_text), port)
    routes = router.LocationRouter(locations)
    uris = ["/", "/exact", "/exactly", "/exact/x.php", "/static/a.css", "/static/a.php",
            "/static/deep/a.css", "/static/deep/x", "/app/", "/app/x.txt", "/app/a.json",
            "/app/a.JSON", "/app/api/v1/x", "/app/api/v1/x.php", "/app/api/x", "/app/raw/a.txt",
            "/app/raw/a.gif", "/x.php", "/admin/x.php", "/a.GIF", "/docs", "/docs/x", "/docsx",
            "/app", "/z/a.jpg", "/app/api/x.json"]
    seen = set()
    for uri in uris:
        status, body = fetch(nginx.port, uri, "localhost")
        assert status == 200, uri
        found = routes.match(uri)
        assert body.decode() == t.names[id(found)], uri
        seen.add(body)
    assert len(seen) >= 14          # the URIs exercise most of the tree


def test_server_choice_matches_nginx(router, start_nginx, tmp_path):
    port = free_port()
    names = [["first.example"], ["www.example.com", "example.com"], ["*.example.com"],
             [".example.org"], ["*.sub.example.org"], ["www.example.*"], ["www.*"],
             [r"~^api\d+\.example\.net$"], [r"~^(?<name>\w+)\.example\.net$"], [""]]
    servers = [Server([Listen("127.0.0.1", port, default_server=(i == 2))], n, [],
                      LocationSettings()) for i, n in enumerate(names)]
    blocks = []
    for i, server in enumerate(servers):
        default = " default_server" if i == 2 else ""
        quoted = " ".join(f'"{name}"' for name in server.server_names)
        blocks.append(f"    server {{\n        listen 127.0.0.1:{port}{default};\n"
                      f"        server_name {quoted};\n        return 200 \"s{i}\";\n    }}")
    nginx = start_nginx(MAIN.format(dir=tmp_path, servers="\n".join(blocks)), port)
    routes = router.ServerRouter(servers)
    hosts = ["first.example", "www.example.com", "EXAMPLE.com", "a.example.com", "a.b.example.com",
             "example.org", "x.example.org", "a.sub.example.org", "www.example.de",
             "www.example.co.uk", "www.other.net", "api12.example.net", "web.example.net",
             "nothing.test", "www.example.com.", "www.example.com:8080", None]
    key = ("127.0.0.1", port)
    seen = set()
    for host in hosts:
        status, body = fetch(nginx.port, "/", host)
        assert status == 200, host
        assert body.decode() == f"s{servers.index(routes.select(key, host))}", host
        seen.add(body)
    assert len(seen) == len(servers)
