"""Side by side with real nginx: limit_rate, limit_rate_after, proxy_limit_rate, add_trailer
and the response variables give nginx's message for broken input, with file:line, and are
accepted where nginx accepts them."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("rate_word", "limit_rate fast;"),
    ("rate_unit", "limit_rate 10x;"),
    ("rate_args", "limit_rate 1k 2k;"),
    ("rate_none", "limit_rate;"),
    ("rate_duplicate", "limit_rate 1k;\n limit_rate 2k;"),
    ("rate_variable", "limit_rate $nonexistent_var;"),
    ("rate_in_events", "server {\n limit_rate_after 1k;\n limit_rate_after 2k;\n }"),
    ("after_word", "limit_rate_after -1;"),
    ("after_in_upstream", "upstream u {\n server 127.0.0.1;\n limit_rate 1k;\n }"),
    ("proxy_rate_args", "proxy_limit_rate 1k 2k;"),
    ("trailer_one", "add_trailer X;"),
    ("trailer_parameter", "add_trailer X y never;"),
    ("trailer_args", "add_trailer X y always z;"),
    ("trailer_variable", "add_trailer X $nonexistent_var;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    if "variable" in name and " in " not in expected:
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line == 5
    else:
        assert str(error) == expected


VALID = [
    "limit_rate 0;", "limit_rate 100k;\n limit_rate_after 1m;", "limit_rate 512;",
    "limit_rate $arg_rate;\n limit_rate_after $arg_after;", "proxy_limit_rate 10k;",
    "add_trailer X-A b;\n add_trailer X-B $request_time always;",
    "server {\n location / {\n  if ($arg_a) {\n   limit_rate 1k;\n   limit_rate_after 2k;\n"
    "   add_trailer X y;\n  }\n }\n }",
    "server {\n location / {\n  set $limit_rate 10k;\n  return 200 $limit_rate;\n }\n }",
    "server {\n set $sent_http_x 1;\n }",
    "log_format v '$sent_http_content_type $upstream_http_x $upstream_cookie_a "
    "$sent_trailer_x $upstream_trailer_x $upstream_cache_status $request_body';",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
