"""Side by side with real nginx: random_index is refused and accepted where nginx does."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("in_server", "server {\n random_index on;\n }"),
    ("in_http", "random_index on;"),
    ("not_a_flag", "server {\n location / {\n random_index yes;\n }\n }"),
    ("two_arguments", "server {\n location / {\n random_index on off;\n }\n }"),
    ("duplicate", "server {\n location / {\n random_index on;\n random_index off;\n }\n }"),
    ("in_if", "server {\n location / {\n if ($uri) {\n random_index on;\n }\n }\n }"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected


def test_accepted_like_nginx(tmp_path):
    accepted_like_nginx(tmp_path, "server {\n location / {\n random_index on;\n"
                                  " location /a/ {\n random_index off;\n }\n }\n }")
