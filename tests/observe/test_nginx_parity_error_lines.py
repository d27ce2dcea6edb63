"""Error-log lines about a request, side by side with real nginx: "*N " (the connection's
number) first, then the message, then ", client: ..., server: ..., request: ...,
[upstream: ...,] host: ..., referrer: ...". Log filters are written against nginx's lines
(fail2ban's nginx-http-auth and nginx-limit-req filters match "*N" and the tail), so the
lines must be the same but for the date, the process and the connection's number."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.http.test_nginx_parity import fetch
from tests.support.dns_server import wait_until
from tests.support.processes import EchoBackend, Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

SITE = """
user root;
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    server {{
        listen 127.0.0.1:{port};
        server_name main.test;
        location /auth {{
            auth_basic "zone"; auth_basic_user_file {dir}/htpasswd; proxy_pass http://{backend};
        }}
        location /deny {{ deny all; proxy_pass http://{backend}; }}
        location /dead/ {{ proxy_pass http://127.0.0.1:{dead}; }}
        location /limited {{ limit_req zone=one nodelay; proxy_pass http://{backend}; }}
        location /cycle {{ rewrite ^ /cycle2; }}
        location /cycle2 {{ rewrite ^ /cycle; }}
    }}
}}
"""

# fail2ban's nginx-http-auth failregex (filter.d/nginx-http-auth.conf), <HOST> as an address.
FAIL2BAN_AUTH = re.compile(
    r'^ \[error\] \d+#\d+: \*\d+ user "(?:[^"]+|.*?)":? (?:password mismatch|was not found in '
    r'"[^\"]*"), client: 127\.0\.0\.1, server: \S*, request: "\S+ \S+ HTTP/\d+\.\d+", '
    r'host: "\S+"(?:, referrer: "\S+")?\s*$')

REQUESTS = [
    ("/auth", {"Authorization": "Basic Ym9iOndyb25n", "Referer": "http://ref.test/page"}),
    ("/auth", {"Authorization": "Basic bm9ib2R5Onh4"}),
    ("/deny", {"Referer": "http://ref.test/"}),
    ("/dead/x?y=1", {"Referer": "http://ref.test/"}),
    ("/limited", {}),
    ("/limited", {}),
    ("/cycle", {}),
]
MESSAGES = ("password mismatch", "was not found", "access forbidden", "connect() failed",
            "limiting requests", "rewrite or internal redirection cycle")


def _normalized(text: str) -> list[str]:
    """The request lines of an error log, date and process left out, "*N" kept as "*N"."""
    lines = []
    for line in text.splitlines():
        if not any(message in line for message in MESSAGES):
            continue
        line = re.sub(r"^\S+ \S+ (\[\w+\]) \d+#\d+: ", r"\1 ", line)
        line = re.sub(r'"/\S+/(nginx|gateway)\d*/', '"DIR/', line)       # each server's folder
        lines.append(re.sub(r"^(\[\w+\]) \*\d+ ", r"\1 *N ", line))
    return lines


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    backend = EchoBackend("lines")
    dead = free_port()
    texts = []
    try:
        for kind in (Nginx, Gateway):
            tmp = tmp_path_factory.mktemp(kind.__name__.lower())
            hashed = subprocess.run(["openssl", "passwd", "-apr1", "secret"], capture_output=True,
                                    text=True, check=True).stdout.strip()
            (tmp / "htpasswd").write_text(f"bob:{hashed}\n")
            port = free_port()
            server = kind(tmp, SITE.format(dir=tmp, port=port, dead=dead,
                                                   backend=backend.address), port)
            try:
                for target, headers in REQUESTS:
                    fetch(port, "GET", target, headers, None)
                log = tmp / "error.log"
                assert wait_until(lambda: "redirection cycle" in log.read_text())
                texts.append(log.read_text())
            finally:
                server.stop()
    finally:
        backend.stop()
    return texts


def test_request_error_lines_are_nginx_lines(logs):
    want, got = (_normalized(text) for text in logs)
    assert len(want) == len(REQUESTS) - 1     # the first /limited passes
    assert got == want


def test_each_line_names_its_connection(logs):
    for text in logs:
        for line in _normalized(text):
            assert " *N " in line


def test_fail2ban_auth_filter_matches_both(logs):
    for text in logs:
        found = [line for line in text.splitlines()
                 if FAIL2BAN_AUTH.match(line[len("2026/12/06 12:00:00"):])]
        assert len(found) == 2, text
