"""Side by side with real nginx: the sub_filter directives are refused, warned about and
accepted where nginx does, with its words and file:line."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from tests.config.test_nginx_wording import accepted_like_nginx, http_conf, refused_like_nginx
from tests.config.test_nginx_wording_geo import nginx_warnings

pytestmark = pytest.mark.nginx

CASES = [
    ("empty_pattern", 'sub_filter "" x;'),
    ("one_argument", "sub_filter a;"),
    ("three_arguments", "sub_filter a b c;"),
    ("unknown_variable", "sub_filter a $nope;"),
    ("not_a_flag", "sub_filter_once maybe;"),
    ("duplicate_once", "sub_filter_once on;\n sub_filter_once off;"),
    ("duplicate_last_modified",
     "sub_filter_last_modified on;\n sub_filter_last_modified on;"),
    ("types_empty", "sub_filter_types;"),
    ("in_if", "server {\n location / {\n if ($uri) {\n sub_filter a b;\n }\n }\n }"),
    ("too_many", "".join(f"sub_filter p{i} x;\n " for i in range(256))),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    if name == "unknown_variable":
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line == 5
    else:
        assert str(error) == expected


def test_same_warnings_as_nginx(tmp_path):
    conf = http_conf(tmp_path, "sub_filter_types text/css TEXT/CSS text/html;")
    expected = nginx_warnings(tmp_path, conf)
    assert expected
    assert load_config(str(conf), str(tmp_path)).warnings == expected


VALID = [
    "sub_filter a b;\n sub_filter $uri \"$host x\";\n sub_filter_once off;\n"
    " sub_filter_types text/css *;\n sub_filter_last_modified on;\n server {\n"
    " sub_filter c d;\n location / {\n sub_filter e f;\n }\n }",
    "".join(f"sub_filter p{i} x;\n " for i in range(255)),
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
