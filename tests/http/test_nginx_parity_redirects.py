"""absolute_redirect, port_in_redirect and server_name_in_redirect side by side with nginx."""

import pytest

from tests.http.test_nginx_parity_maps import running_pair, same_answer

pytestmark = pytest.mark.nginx

SITE = r"""
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test alias.test;
        location /plain {{ return 302 /t; }}
        location /relative {{ absolute_redirect off; return 301 /t?x=1; }}
        location /noport {{ port_in_redirect off; return 302 /t; }}
        location /sname {{ server_name_in_redirect on; return 302 /t; }}
        location /both {{ server_name_in_redirect on; port_in_redirect off; return 307 /t; }}
        location /dir/ {{ absolute_redirect off; proxy_pass http://app; }}
        location /rw {{ port_in_redirect off; rewrite ^ /t redirect; }}
    }}
}}
"""

CASES = [
    ("GET", "/plain", {"Host": "alias.test"}, None),
    ("GET", "/relative", {}, None),
    ("GET", "/noport", {"Host": "alias.test"}, None),
    ("GET", "/sname", {"Host": "alias.test"}, None),
    ("GET", "/both", {"Host": "alias.test"}, None),
    ("GET", "/dir", {}, None),                      # the auto-redirect to "/dir/"
    ("GET", "/rw", {}, None),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "redirects") as both:
        yield both


@pytest.mark.parametrize("method, target, headers, body", CASES, ids=[c[1] for c in CASES])
def test_redirect_same_as_nginx(pair, method, target, headers, body):
    same_answer(*pair, method, target, headers, body)
