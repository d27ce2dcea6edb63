"""error_page, recursive_error_pages and internal: loading, and refusals in nginx's words."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.config.model import ErrorPage
from gateway.errors import ConfigError
from tests.config.nginx_check import nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"

REFUSED = [
    ("args", "http {\n error_page 404;\n}\n"),
    ("equals_alone", "http {\n error_page = /x;\n}\n"),
    ("equals_value", "http {\n error_page 404 =abc /x;\n}\n"),
    ("code_low", "http {\n error_page 200 /x;\n}\n"),
    ("code_text", "http {\n error_page abc /x;\n}\n"),
    ("code_499", "http {\n error_page 499 /x;\n}\n"),
    ("internal_args", "http {\n server {\n  location / {\n   internal x;\n  }\n }\n}\n"),
    ("internal_server", "http {\n server {\n  internal;\n }\n}\n"),
    ("recursive_flag", "http {\n recursive_error_pages maybe;\n}\n"),
]



@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_likenginx_refusal(tmp_path, name, body):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + body)
    code, expected = nginx_refusal(tmp_path, path)
    assert code != 0
    with pytest.raises(ConfigError) as info:
        load_config(str(path), str(tmp_path))
    assert str(info.value) == expected


@pytest.mark.nginx
def test_error_pages_load_and_inherit(tmp_path):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + """
http {
    error_page 404 /404.html;
    error_page 500 502 503 504 =200 /50x.html;
    recursive_error_pages on;
    server {
        listen 127.0.0.1:1;
        location / { }
        location /own/ { error_page 403 = @x; internal; location /own/inner/ { } }
        location @x { }
        location /url/ { error_page 404 =301 http://example.com/; }
    }
}
""")
    code, message = nginx_refusal(tmp_path, path)
    assert code == 0, message
    server = load_config(str(path), str(tmp_path)).http.servers[0]
    root, own, _, url = server.locations
    assert root.settings.error_pages == [ErrorPage(frozenset({404}), "/404.html", -1),
                                         ErrorPage(frozenset({500, 502, 503, 504}),
                                                   "/50x.html", 200)]
    assert root.settings.recursive_error_pages and not root.settings.internal
    # A level with error_page of its own does not inherit the others (as add_header).
    assert own.settings.error_pages == [ErrorPage(frozenset({403}), "@x", 0)]
    assert own.settings.internal and not own.children[0].settings.internal
    assert own.children[0].settings.error_pages == own.settings.error_pages
    assert url.settings.error_pages == [ErrorPage(frozenset({404}), "http://example.com/", 301)]
