"""Side by side with real nginx: autoindex*, disable_symlinks, auth_request and
auth_request_set give nginx's message for broken input, with file:line, and are accepted where
nginx accepts them."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

CASES = [
    ("autoindex_flag", "autoindex yes;"),
    ("autoindex_duplicate", "autoindex on;\n autoindex off;"),
    ("autoindex_args", "autoindex on off;"),
    ("format_word", "autoindex_format yaml;"),
    ("format_duplicate", "autoindex_format json;\n autoindex_format xml;"),
    ("exact_size_flag", "autoindex_exact_size 1;"),
    ("localtime_flag", "autoindex_localtime yes;"),
    ("localtime_in_if", "server {\n location / {\n  if ($arg_a) {\n   autoindex on;\n  }\n }\n }"),
    ("symlinks_word", "disable_symlinks maybe;"),
    ("symlinks_from_only", "disable_symlinks from=/srv;"),
    ("symlinks_twice", "disable_symlinks on off;"),
    ("symlinks_off_from", "disable_symlinks off from=/srv;"),
    ("symlinks_from_bad_var", "disable_symlinks on from=$nonexistent_var;"),
    ("symlinks_duplicate", "disable_symlinks on;\n disable_symlinks off;"),
    ("symlinks_args", "disable_symlinks on from=/a from=/b;"),
    ("symlinks_in_upstream", "upstream u {\n server 127.0.0.1;\n disable_symlinks on;\n }"),
    ("auth_request_duplicate", "auth_request /a;\n auth_request /b;"),
    ("auth_request_args", "auth_request /a /b;"),
    ("auth_request_set_name", "auth_request_set user $upstream_http_x_user;"),
    ("auth_request_set_args", "auth_request_set $user;"),
    ("auth_request_set_var", "auth_request_set $user $nonexistent_var;"),
    ("auth_request_set_builtin", "auth_request_set $uri x;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    if name.endswith("_var"):
        # nginx names no place for an unknown variable; we add file:line, strictly more.
        assert error.message == expected and error.line == 5
    else:
        assert str(error) == expected


VALID = [
    "autoindex on;\n autoindex_format jsonp;\n autoindex_exact_size off;\n autoindex_localtime on;",
    "server {\n autoindex off;\n location / {\n  autoindex on;\n  autoindex_format xml;\n }\n }",
    "autoindex_format JSON;", "disable_symlinks on;", "disable_symlinks if_not_owner;", "disable_symlinks off;",
    "disable_symlinks on from=$document_root;", "disable_symlinks if_not_owner from=/srv/;",
    "disable_symlinks from=/srv on;",
    "auth_request /auth;\n auth_request_set $user $http_x_user;\n auth_request_set $a b;",
    "auth_request off;",
    "server {\n location / {\n  auth_request /a;\n  satisfy any;\n  allow 127.0.0.1;\n }\n }",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
