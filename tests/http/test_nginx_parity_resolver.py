"""``resolver`` side by side with real nginx: ``proxy_pass`` with variables naming a host that no
``upstream`` declares. Each server asks its own name server (tests/support/dns_server.py), so the
questions each one asked are counted and compared too: A and AAAA once per name while the
answer is valid (``valid=`` or the TTL), again after; failures (NXDOMAIN, SERVFAIL, silence
until ``resolver_timeout``) answered 502 with nginx's error line; a CNAME followed; a body
sent while the name is resolved reaches the upstream; two addresses, one dead, still answer."""

from __future__ import annotations

import json
import time

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx
from tests.http.test_nginx_parity import fetch, upstream_view
from tests.support.dns_server import DnsServer, wait_until
from tests.support.processes import EchoBackend, Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

SITE = """
user root;
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        server_name main.test;
        resolver 127.0.0.1:{dns} valid=30s;
        resolver_timeout 1s;
        location /p/ {{ proxy_pass http://$arg_h:{backend}/seen$uri; }}
        location /fallback/ {{
            # The first name server never answers: the queries are resent to the next.
            resolver 127.0.0.1:{mute} 127.0.0.1:{dns};
            resolver_timeout 9s;
            proxy_pass http://$arg_h:{backend};
        }}
        location /refused/ {{
            # Nothing listens on the first: a send refused goes to the next at once.
            resolver 127.0.0.1:{dead} 127.0.0.1:{dns};
            resolver_timeout 9s;
            proxy_pass http://$arg_h:{backend};
        }}
        location /ttl/ {{
            resolver 127.0.0.1:{dns} ipv6=off;
            proxy_pass http://$arg_h:{backend};
        }}
    }}
    server {{
        listen 127.0.0.1:{other};
        location / {{ proxy_pass http://$arg_h:{backend}; }}
    }}
}}
"""

RECORDS = {
    "app.test": {"a": ["127.0.0.1"], "aaaa": []},
    "slow.test": {"a": ["127.0.0.1"], "delay": 0.3},
    "alias.test": {"cname": "app.test"},
    "short.test": {"a": ["127.0.0.1"], "ttl": 1},
    "broken.test": {"rcode": 2},
    "refused.test": {"rcode": 5},
    "silent.test": {"silent": True},
    # 127.0.0.2: nothing listens there on the backend's port (connection refused).
    "two.test": {"a": ["127.0.0.2", "127.0.0.1"]},
}


class Side:
    """One server (nginx or the gateway) with its own name server."""

    def __init__(self, kind, tmp, backend_port):
        self.dns = DnsServer(RECORDS)
        self.mute = DnsServer({"app.test": {"silent": True}})
        self.port, self.other = free_port(), free_port()
        config = SITE.format(dir=tmp, port=self.port, other=self.other, dns=self.dns.port,
                             mute=self.mute.port, dead=free_port(), backend=backend_port)
        try:
            self.server = (Nginx if kind == "nginx" else Gateway)(tmp, config, self.port)
        except BaseException:
            self.dns.stop()
            self.mute.stop()
            raise
        self.kind = kind
        self.error_log = tmp / "error.log"

    def get(self, target, port=None, method="GET", body=None):
        return fetch(port or self.port, method, target, {}, body)

    def errors(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def __repr__(self):
        return self.kind

    def stop(self):
        self.server.stop()
        self.dns.stop()
        self.mute.stop()


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    backend = EchoBackend("resolved")
    started = []
    try:
        for kind in ("nginx", "gateway"):
            started.append(Side(kind, tmp_path_factory.mktemp(kind), backend.port))
        yield started
    finally:
        for side in started:
            side.stop()
        backend.stop()


def _seen(answer):
    status, _, body = answer
    return status, upstream_view(body)


def test_a_resolved_name_is_proxied_as_nginx_proxies_it(sides):
    answers = [_seen(side.get("/p/x?h=app.test")) for side in sides]
    assert answers[0][0] == 200
    assert answers[1] == answers[0]
    # The upstream is told the name and port it was reached by, as proxy_pass wrote them.
    assert answers[0][1]["headers"]["host"].startswith("app.test:")


def test_an_answer_is_kept_while_valid_and_both_families_are_asked(sides):
    for side in sides:
        for _ in range(3):
            assert side.get("/p/again?h=app.test")[0] == 200
    asked = [(side.dns.asked("app.test", "A"), side.dns.asked("app.test", "AAAA")) for side in sides]
    assert asked[1] == asked[0] == (1, 1)


def test_an_answer_is_asked_again_once_its_ttl_has_passed(sides):
    for side in sides:
        assert side.get("/ttl/?h=short.test")[0] == 200
    time.sleep(2.2)
    for side in sides:
        assert side.get("/ttl/?h=short.test")[0] == 200
    # ipv6=off: A only; the 1-second TTL made the second request ask again.
    asked = [(side.dns.asked("short.test", "A"), side.dns.asked("short.test", "AAAA"))
             for side in sides]
    assert asked[1] == asked[0] == (2, 0)


def test_a_name_server_that_does_not_answer_is_passed_over_after_5_seconds(sides):
    waited = []
    for side in sides:
        started = time.monotonic()
        assert side.get("/fallback/?h=app.test")[0] == 200
        waited.append(time.monotonic() - started)
    for seconds in waited:
        assert 4.5 < seconds < 7.5, waited
    assert [side.mute.asked("app.test", "A") for side in sides] == [1, 1]


def test_a_name_server_that_refuses_the_queries_is_passed_over_at_once(sides):
    for side in sides:
        started = time.monotonic()
        assert side.get("/refused/?h=app.test")[0] == 200
        assert time.monotonic() - started < 3, side


def test_a_cname_is_followed(sides):
    answers = [_seen(side.get("/p/c?h=alias.test")) for side in sides]
    assert answers[0][0] == 200 and answers[1] == answers[0]


def test_a_body_sent_while_the_name_is_resolved_reaches_the_upstream(sides):
    body = b"posted while resolving " * 100
    answers = [_seen(side.get("/p/post?h=slow.test", method="POST", body=body)) for side in sides]
    assert answers[0][0] == 200 and answers[1] == answers[0]
    assert answers[0][1]["method"] == "POST"


def test_a_dead_address_is_passed_over_for_the_next(sides):
    for side in sides:
        for _ in range(2):
            status, _, body = side.get("/p/two?h=two.test")
            assert status == 200, side
            assert json.loads(body)["backend"] == "resolved"


@pytest.mark.parametrize("name, code, text", [
    ("missing.test", 3, "Host not found"),
    ("broken.test", 2, "Server failure"),
    ("refused.test", 5, "Operation refused"),
    ("silent.test", 110, "Operation timed out"),
])
def test_a_name_that_does_not_resolve_is_a_502_with_nginx_error_line(sides, name, code, text):
    line = f"{name} could not be resolved ({code}: {text})"
    for side in sides:
        started = time.monotonic()
        assert side.get(f"/p/x?h={name}")[0] == 502
        if code == 110:     # resolver_timeout 1s
            assert time.monotonic() - started >= 0.9
        assert wait_until(lambda: line in side.errors()), (side, side.errors()[-2000:])
    # Failures are not kept: the name is asked again by the next request.
    asked = []
    for side in sides:
        before = side.dns.asked(name, "A")
        assert side.get(f"/p/y?h={name}")[0] == 502
        asked.append(side.dns.asked(name, "A") - before)
    assert asked == [1, 1]


def test_a_name_dns_cannot_carry_is_a_502(sides):
    name = "a" * 70 + ".test"       # a label longer than 63 bytes
    for side in sides:
        assert side.get(f"/p/x?h={name}")[0] == 502
    assert "could not be resolved" in sides[1].errors()


def test_without_a_resolver_a_name_is_a_502(sides):
    line = "no resolver defined to resolve app.test"
    for side in sides:
        assert side.get("/?h=app.test", port=side.other)[0] == 502
        assert wait_until(lambda: line in side.errors())


# Config: what nginx refuses, refused with its words; what it takes, taken ----------------

@pytest.mark.parametrize("body", [
    "resolver valid=10s;",
    "resolver 127.0.0.1 valid=ten;",
    "resolver 127.0.0.1 ipv6=maybe;",
    "resolver 127.0.0.1:99999;",
    "resolver;",
    "resolver_timeout soon;",
    "resolver_timeout 1s 2s;",
    "server {\n resolver 127.0.0.1;\n resolver 127.0.0.2;\n }",
], ids=["no-servers", "valid", "ipv6", "port", "no-args", "timeout", "timeout-args", "duplicate"])
def test_a_bad_resolver_line_is_refused_as_nginx_refuses_it(tmp_path, body):
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected


@pytest.mark.parametrize("body", [
    "resolver 127.0.0.1;",
    "resolver 127.0.0.1:5353 [::1] valid=30s ipv6=off;",
    "resolver localhost;\n resolver_timeout 5s;",
    "server {\n location / {\n  resolver 127.0.0.1 valid=1m;\n  resolver_timeout 500ms;\n }\n }",
])
def test_resolver_lines_nginx_takes_are_taken(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
