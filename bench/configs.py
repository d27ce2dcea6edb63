"""Config texts the harness generates: the backend nginx, the proxy (nginx and gateway) and HAProxy."""

from __future__ import annotations

SMALL_BODY = "hello, world\n"
LARGE_NAME = "64k.bin"
LARGE_SIZE = 64 * 1024
TEXT_NAME = "10k.txt"
TEXT_SIZE = 10 * 1024


def text_page(size: int = TEXT_SIZE) -> bytes:
    """Text that compresses as a web page does (about 4:1 at level 1), for the gzip scenario."""
    lines = [b"%05d <li class=\"item\">the quick brown fox %d jumps over the lazy dog</li>\n"
             % (i, i * 7919 % 10007) for i in range(size // 40 + 1)]
    return b"".join(lines)[:size]

# nginx keeps request bodies and buffered responses in these; the gateway has no such
# directives, so they go into nginx's copy of the proxy config only.
NGINX_TEMP_PATHS = """\
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
"""


def backend_nginx(ports: list[int], root: str) -> str:
    """The backend: one nginx worker answering on every port with fixed and static content."""
    listens = "".join(f"        listen 127.0.0.1:{port} backlog=4096;\n" for port in ports)
    return f"""\
worker_processes 1;
pid backend.pid;
error_log backend-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
{NGINX_TEMP_PATHS}\
    keepalive_requests 1000000;
    server {{
{listens}\
        root {root};
        location = /small {{ return 200 "{SMALL_BODY.strip()}\\n"; }}
        location = /upload {{ client_max_body_size 0; return 200 "ok\\n"; }}
        location / {{ }}
    }}
}}
"""


def proxy(port: int, upstreams: list[int], workers: str, nginx: bool,
          unikernel: tuple[str, str] | None = None,
          tls: tuple[str, str] | None = None, limit_req: bool = False, gzip: int = 0,
          upgrade: bool = False, http2: bool = False, rewrite: bool = False) -> str:
    """The proxy under test, in nginx's language: one text for nginx and the gateway.

    ``nginx`` adds the temp-path directives only nginx knows; ``unikernel`` (service name,
    image path) routes every request with the gateway's ``unikernel_pass`` instead;
    ``tls`` (certificate, key files) makes the client side HTTPS; ``limit_req`` puts every
    request through a limit_req zone that admits them all (the check's own cost); ``gzip`` (a
    level, 0 for off) compresses text/plain answers; ``upgrade`` passes WebSocket upgrades on
    with nginx's standard map; ``http2`` speaks HTTP/2 to clients (ALPN h2
    over TLS, prior knowledge without); ``rewrite`` puts the rewrite module on the hot path
    as configs commonly do: a ``map`` read by a header, an ``if`` that does not match and two
    ``rewrite``s, one of which matches and sends its captured URI.
    """
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
    extra = NGINX_TEMP_PATHS if nginx else ""
    route = """proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
    if upgrade:
        extra += "    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
        route = """proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;"""
    if unikernel:
        name, image = unikernel
        extra += f"    unikernel {name} {{ image {image}; }}\n"
        route = f"unikernel_pass {name};"
    if rewrite:
        extra += "    map $uri $route_tag { default app; ~^/static/ static; }\n"
        route = """if ($request_method = POST) { return 405; }
            rewrite ^/legacy/(.*)$ /$1 permanent;
            rewrite ^/(small)$ /$1 break;
            proxy_set_header X-Route $route_tag;
            """ + route
    if limit_req:
        extra += "    limit_req_zone $binary_remote_addr zone=bench:10m rate=100000000r/s;\n"
        route = "limit_req zone=bench burst=100000000 nodelay;\n            " + route
    if gzip:
        extra += f"    gzip on;\n    gzip_comp_level {gzip};\n    gzip_types text/plain;\n"
    listen_tls = " http2" if http2 else ""
    if tls:
        listen_tls += " ssl"
        # Named explicitly: Debian's nginx 1.22 leaves TLSv1.3 out by default.
        extra += (f"    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n"
                  "    ssl_protocols TLSv1.2 TLSv1.3;\n")
    return f"""\
worker_processes {workers};
pid proxy.pid;
error_log error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
{extra}\
    keepalive_requests 1000000;
    client_max_body_size 0;
    upstream b {{
{servers}\
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{listen_tls} backlog=4096;
        location / {{
            {route}
        }}
    }}
}}
"""


def haproxy(port: int, upstreams: list[int], threads: int) -> str:
    """HAProxy as the same proxy: keep-alive both sides, idle upstream connections always reused."""
    servers = "".join(f"    server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(upstreams))
    return f"""\
global
    nbthread {threads}
    maxconn 8000

defaults
    mode http
    maxconn 8000
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    balance roundrobin
{servers}"""
