"""Side by side with real nginx: mirror and mirror_request_body are refused and accepted where
nginx does, with its words."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("no_argument", "server {\n location / {\n mirror;\n }\n }"),
    ("two_arguments", "server {\n location / {\n mirror /m /n;\n }\n }"),
    ("off_after_uri", "server {\n location / {\n mirror /m;\n mirror off;\n }\n }"),
    ("uri_after_off", "server {\n location / {\n mirror off;\n mirror /m;\n }\n }"),
    ("off_twice", "server {\n mirror off;\n mirror off;\n }"),
    ("in_if", "server {\n location / {\n if ($uri) {\n mirror /m;\n }\n }\n }"),
    ("body_not_a_flag", "server {\n location / {\n mirror_request_body yes;\n }\n }"),
    ("body_duplicate", "mirror_request_body on;\n mirror_request_body off;"),
    ("body_two_arguments", "server {\n mirror_request_body on off;\n }"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    assert str(error) == expected


def test_accepted_like_nginx(tmp_path):
    accepted_like_nginx(tmp_path, "mirror /a;\n mirror_request_body off;\n server {\n"
                                  " mirror /b;\n mirror /c;\n location / {\n mirror off;\n"
                                  " location /in/ {\n mirror /d;\n mirror_request_body on;\n"
                                  " }\n }\n location = /a {\n internal;\n return 204;\n }\n"
                                  " }")
