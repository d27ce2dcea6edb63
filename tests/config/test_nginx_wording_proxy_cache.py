"""Side by side with real nginx: proxy_cache_path, proxy_cache and the other proxy_cache*
directives give nginx's message for broken input, with file:line, and are accepted where
nginx accepts them."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

LOCATION = "server {\n listen 127.0.0.1:1;\n location / {\n proxy_pass http://127.0.0.1:2;\n %s\n }\n }"

CASES = [
    ("path_args", "proxy_cache_path {tmp}/c;"),
    ("path_no_zone", "proxy_cache_path {tmp}/c levels=1:2;"),
    ("path_levels_three", "proxy_cache_path {tmp}/c levels=3 keys_zone=a:1m;"),
    ("path_levels_many", "proxy_cache_path {tmp}/c levels=1:2:2:1 keys_zone=a:1m;"),
    ("path_levels_colon", "proxy_cache_path {tmp}/c levels=1: keys_zone=a:1m;"),
    ("path_zone_size", "proxy_cache_path {tmp}/c keys_zone=a;"),
    ("path_zone_unit", "proxy_cache_path {tmp}/c keys_zone=a:1q;"),
    ("path_zone_small", "proxy_cache_path {tmp}/c keys_zone=a:1k;"),
    ("path_inactive", "proxy_cache_path {tmp}/c keys_zone=a:1m inactive=soon;"),
    ("path_max_size", "proxy_cache_path {tmp}/c keys_zone=a:1m max_size=big;"),
    ("path_temp", "proxy_cache_path {tmp}/c keys_zone=a:1m use_temp_path=maybe;"),
    ("path_param", "proxy_cache_path {tmp}/c keys_zone=a:1m colour=blue;"),
    ("path_duplicate_zone",
     "proxy_cache_path {tmp}/c keys_zone=a:1m;\n proxy_cache_path {tmp}/d keys_zone=a:1m;"),
    ("path_in_server", "server {\n proxy_cache_path {tmp}/c keys_zone=a:1m;\n }"),
    ("valid_time", "proxy_cache_valid 200 often;"),
    ("valid_status", "proxy_cache_valid 99 10m;"),
    ("valid_word", "proxy_cache_valid ok 10m;"),
    ("valid_big_status", "proxy_cache_valid 200 600 10m;"),
    ("valid_none", "proxy_cache_valid;"),
    ("cache_duplicate", "proxy_cache off;\n proxy_cache off;"),
    ("cache_args", "proxy_cache a b;"),
    ("methods_value", "proxy_cache_methods GET PUT;"),
    ("use_stale_value", "proxy_cache_use_stale error sometimes;"),
    ("min_uses", "proxy_cache_min_uses many;"),
    ("lock_flag", "proxy_cache_lock maybe;"),
    ("key_duplicate", "proxy_cache_key a;\n proxy_cache_key b;"),
    ("key_variable", "proxy_cache_key $nonexistent_var;"),
    ("bypass_variable", "proxy_cache_bypass $nonexistent_var;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body.replace("{tmp}", str(tmp_path)))
    if "variable" in name and " in " not in expected:
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line is not None
    else:
        assert str(error) == expected


VALID = [
    "proxy_cache_path {tmp}/c levels=1:2 keys_zone=one:10m inactive=60m max_size=1g "
    "use_temp_path=off;\n " + LOCATION % "proxy_cache one;",
    "proxy_cache_path {tmp}/c keys_zone=one:1m loader_files=100 manager_sleep=50ms;\n"
    " proxy_cache one;\n proxy_cache_valid 200 302 10m;\n proxy_cache_valid 404 1m;\n"
    " proxy_cache_valid any 5s;\n proxy_cache_key $host$request_uri;\n"
    " proxy_cache_methods GET HEAD POST;\n proxy_cache_bypass $cookie_nocache $arg_nocache;\n"
    " proxy_no_cache $http_pragma;\n proxy_cache_min_uses 2;\n"
    " proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;\n"
    " proxy_cache_lock on;\n proxy_cache_lock_timeout 5s;\n proxy_cache_revalidate on;\n"
    " proxy_cache_convert_head off;\n" + LOCATION % "proxy_cache off;",
    # A zone may be named before it is declared, as in nginx.
    LOCATION % "proxy_cache later;" + "\n proxy_cache_path {tmp}/c keys_zone=later:1m;",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body.replace("{tmp}", str(tmp_path)))


def test_unknown_zone_refused_like_nginx(tmp_path):
    expected, error = refused_like_nginx(tmp_path, LOCATION % "proxy_cache nowhere;")
    assert error.message == expected.split(" in ")[0]
