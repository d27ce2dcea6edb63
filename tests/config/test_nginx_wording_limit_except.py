"""Side by side with real nginx: limit_except gives nginx's message for a misplaced or broken
block, with file:line, and is accepted where nginx accepts it."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from tests.config.test_nginx_wording import accepted_like_nginx, http_conf, refused_like_nginx

pytestmark = pytest.mark.nginx


def in_location(*lines: str) -> str:
    return "server {\n location / {\n" + "\n".join(f"  {line}" for line in lines) + "\n }\n }"


CASES = [
    ("in_http", "limit_except GET { }"),
    ("in_server", "server {\n limit_except GET { }\n }"),
    ("in_if", in_location("if ($arg_a) {", "  limit_except GET { }", "}")),
    ("nested", in_location("limit_except GET {", "  limit_except POST { }", "}")),
    ("invalid_method", in_location("limit_except GET FOO { }")),
    ("trace", in_location("limit_except TRACE { }")),
    ("connect", in_location("limit_except CONNECT { }")),
    ("lowercase_invalid", in_location("limit_except get foo { }")),
    ("method_before_block", in_location("limit_except BAR {", "  bogus;", "}")),
    ("duplicate", in_location("limit_except GET { }", "limit_except POST { }")),
    ("duplicate_first", in_location("limit_except GET { }", "limit_except FOO { }")),
    ("no_methods", in_location("limit_except { }")),
    ("no_block", in_location("limit_except GET;")),
    ("return", in_location("limit_except GET {", "  return 403;", "}")),
    ("satisfy", in_location("limit_except GET {", "  satisfy any;", "}")),
    ("root", in_location("limit_except GET {", "  root /tmp;", "}")),
    ("location", in_location("limit_except GET {", "  location /a { }", "}")),
    ("auth_request", in_location("limit_except GET {", "  auth_request /auth;", "}")),
    ("limit_req", in_location("limit_except GET {", "  limit_req zone=z;", "}")),
    ("unknown", in_location("limit_except GET {", "  bogus on;", "}")),
    ("auth_basic_twice", in_location("limit_except GET {", "  auth_basic a;", "  auth_basic b;",
                                     "}")),
    ("allow_invalid", in_location("limit_except GET {", "  allow 10.0.0.300;", "}")),
    ("proxy_pass_uri", in_location("limit_except GET {", "  proxy_pass http://127.0.0.1:9/x;",
                                   "}")),
    ("proxy_pass_twice", in_location("limit_except GET {", "  proxy_pass http://127.0.0.1:9;",
                                     "  proxy_pass http://127.0.0.1:9;", "}")),
    ("unterminated", in_location("limit_except GET {", "  deny all;")),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected


VALID = [
    in_location("limit_except GET { deny all; }"),
    in_location("limit_except GET HEAD POST PUT DELETE MKCOL COPY MOVE OPTIONS PROPFIND",
                "             PROPPATCH LOCK UNLOCK PATCH { allow all; }"),
    in_location("limit_except get Post {", "  allow 127.0.0.1; allow ::1; deny all;",
                "  auth_basic \"writers\"; auth_basic_user_file htpasswd;",
                "  access_log off;", "}", "satisfy any;"),
    in_location("proxy_pass http://127.0.0.1:9/v1/;", "limit_except GET { deny all; }"),
    in_location("limit_except GET {", "  proxy_pass http://127.0.0.1:9;", "}",
                "return 200 ok;"),
    "server {\n location ~ ^/re/ {\n  limit_except GET { deny all; }\n }\n"
    " location @named {\n  limit_except GET { deny all; }\n }\n }",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)


def test_block_settings(tmp_path):
    """The block's methods (GET brings HEAD) and what it takes from its location."""
    conf = http_conf(tmp_path, in_location(
        "deny 10.0.0.0/8;", "satisfy any;", "return 200 ok;", "add_header X-A b;",
        "limit_except get Put {", "  auth_basic writers;", "  auth_basic_user_file htpasswd;", "}"))
    config = load_config(str(conf), str(tmp_path))
    location = config.http.servers[0].locations[0]
    limits = location.limit_except
    assert limits.methods == {"GET", "HEAD", "PUT"}
    assert (limits.location.file, limits.location.line) == (str(conf), 11)
    assert (limits.location.modifier, limits.location.pattern) == ("", "/")
    settings = limits.location.settings
    assert settings.return_ is None and location.settings.return_ is not None
    assert settings.satisfy == "any" and settings.access_rules == location.settings.access_rules
    assert settings.auth_basic == "writers" and location.settings.auth_basic is None
    assert [h.name for h in settings.add_headers] == ["X-A"]
    assert config.http.servers[0].locations[0].children == []
