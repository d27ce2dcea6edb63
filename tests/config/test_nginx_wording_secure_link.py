"""Side by side with real nginx: the secure_link directives are refused and accepted where
nginx does, with its words and file:line."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("mixed_server", "server {\n secure_link $arg_h;\n secure_link_secret s;\n }"),
    ("mixed_location", "server {\n location / {\n secure_link_md5 $uri;\n"
                       " secure_link_secret s;\n }\n }"),
    ("duplicate", "server {\n secure_link $arg_a;\n secure_link $arg_b;\n }"),
    ("duplicate_secret", "secure_link_secret a;\n secure_link_secret b;"),
    ("unknown_variable", "server {\n secure_link_md5 $nope;\n }"),
    ("in_if", "server {\n location / {\n if ($uri) {\n secure_link $arg_h;\n }\n }\n }"),
    ("two_arguments", "secure_link $arg_a $arg_b;"),
    ("no_argument", "secure_link_secret;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    if name == "unknown_variable":
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line == 6
    else:
        assert str(error) == expected


VALID = [
    # mixed at the http level: nginx never checks that level itself
    "secure_link $arg_h;\n secure_link_secret s;\n server {\n }",
    "secure_link_secret s;\n server {\n secure_link $arg_h;\n location / {\n"
    " secure_link_md5 \"$uri x\";\n }\n }",
    "server {\n location / {\n return 200 \"$secure_link $secure_link_expires\";\n }\n }",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
