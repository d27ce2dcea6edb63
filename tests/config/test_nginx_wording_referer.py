"""Side by side with real nginx: valid_referers gives nginx's errors, with file:line, and is
accepted where nginx accepts it."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("in_http", "valid_referers none;"),
    ("no_arguments", "server {\n valid_referers;\n }"),
    ("empty", 'server {\n valid_referers "";\n }'),
    ("empty_regex", "server {\n valid_referers ~;\n }"),
    ("bad_regex", "server {\n valid_referers ~(;\n }"),
    ("two_stars", "server {\n valid_referers *.a.*;\n }"),
    ("inner_star", "server {\n valid_referers a*b.com;\n }"),
    ("double_dot", "server {\n valid_referers a..b.com;\n }"),
    ("conflict", "server {\n valid_referers a.com A.com;\n }"),
    ("conflict_lines", "server {\n valid_referers a.com;\n valid_referers a.com/x;\n }"),
    ("conflict_dot", "server {\n valid_referers a.com .a.com;\n }"),
    ("conflict_wildcard", "server {\n valid_referers *.a.com *.a.com;\n }"),
    ("none_alone", "server {\n location / {\n valid_referers none blocked;\n }\n }"),
    ("none_regex_only", "server {\n valid_referers none ~example;\n }"),
    ("in_if", "server {\n location / {\n if ($uri) {\n valid_referers none;\n }\n }\n }"),
    ("hash_size", "server {\n referer_hash_max_size big;\n }"),
    ("hash_duplicate", "server {\n referer_hash_bucket_size 64;\n referer_hash_bucket_size 64;\n }"),
    ("hash_in_http", "referer_hash_max_size 1024;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected


VALID = [
    "server {\n valid_referers none blocked server_names *.example.com example.org/galleries/"
    " www.example.* ~\\.google\\. .example.net;\n }",
    "server {\n server_name ~^www\\d+\\.test$ a.test;\n valid_referers server_names;\n"
    " location / {\n valid_referers none a.test/x;\n }\n }",
    "server {\n valid_referers ~only;\n referer_hash_max_size 4096;\n"
    " referer_hash_bucket_size 128;\n }",
    "server {\n location / {\n set $invalid_referer 1;\n return 200 $invalid_referer;\n }\n }",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)


def test_server_name_conflict_placed_where_nginx_merges(tmp_path):
    """A server name that is also listed: nginx finds it when it merges, at http's "}"."""
    body = "server {\n server_name a.test;\n valid_referers server_names a.test;\n }"
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected
