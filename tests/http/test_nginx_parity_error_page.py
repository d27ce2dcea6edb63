"""error_page and internal side by side with real nginx."""

import pytest

from tests.http.test_nginx_parity_maps import running_pair, same_answer

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    default_type text/plain;
    upstream app {{ server {backend}; }}
    upstream dead {{ server 127.0.0.1:1; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;
        error_page 404 /404.html;
        error_page 500 502 503 504 =200 /fallback;

        location = /fallback {{ return 200 "fallback $uri $request_method\n"; }}
        location /dead/ {{ proxy_pass http://dead; }}
        location /dead-keep/ {{
            error_page 502 /fallback;
            proxy_pass http://dead;
        }}
        location /named/ {{
            error_page 404 = @app;
            return 404;
        }}
        location @app {{ proxy_pass http://app; }}
        location /away/ {{
            error_page 403 http://example.com/forbidden;
            error_page 404 =301 http://example.com/moved;
            location /away/f {{ return 403; }}
            location /away/n {{ return 404; }}
        }}
        location /int/ {{ internal; return 200 "internal $uri\n"; }}
        location /teapot {{ error_page 418 /int/tea; return 418; }}
        location /rec/ {{ error_page 404 /missing.html; }}
        location /text/ {{ return 404 "own text\n"; }}
        location /hdr/ {{ add_header X-A a; add_header X-B b always; return 404; }}
    }}
}}
"""

CASES = [
    ("GET", "/nothing.txt", {}, None),             # static 404 -> /404.html, status 404
    ("HEAD", "/nothing.txt", {}, None),
    ("POST", "/nothing.txt", {}, b"x=1"),          # the error page is fetched with GET
    ("GET", "/dead/x?a=1", {}, None),              # 502 -> =200 /fallback
    ("GET", "/dead-keep/x", {}, None),             # 502 kept
    ("GET", "/named/q?z=1", {}, None),             # = @named: the upstream's status
    ("GET", "/away/f", {}, None),                  # URL: 302
    ("GET", "/away/n", {}, None),                  # =301 URL
    ("GET", "/int/direct", {}, None),              # internal from outside: 404 page
    ("GET", "/teapot", {}, None),                  # into an internal location, 418 kept
    ("GET", "/rec/none", {}, None),                # no recursion: nginx's own 404 page
    ("GET", "/text/", {}, None),                   # return with text: no error page
    ("GET", "/hdr/", {}, None),
    ("GET", "/404.html", {}, None),
]


def _site_files(directory):
    html = directory / "html"
    html.mkdir(exist_ok=True)
    (html / "404.html").write_text("<h1>custom not found</h1>\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "errorpage", _site_files) as both:
        yield both


@pytest.mark.parametrize("method, target, headers, body", CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_error_page_same_as_nginx(pair, method, target, headers, body):
    same_answer(*pair, method, target, headers, body)
