"""Side by side with real nginx: the header directives (expires, proxy_redirect, proxy_cookie_*,
proxy_hide_header...) give nginx's message for broken input, with file:line, and are accepted
where nginx accepts them."""

from __future__ import annotations

import pytest

from tests.config.test_nginx_wording import accepted_like_nginx, refused_like_nginx

pytestmark = pytest.mark.nginx

PROXY = "proxy_pass http://127.0.0.1:1/;"

CASES = [
    ("expires_word", "expires foo;"),
    ("expires_modified_epoch", "expires modified epoch;"),
    ("expires_not_modified", "expires mod 1h;"),
    ("expires_daily_modified", "expires modified @1h;"),
    ("expires_daily_long", "expires @25h;"),
    ("expires_duplicate", "expires 1h;\n expires 2h;"),
    ("expires_args", "expires 1h 2h 3h;"),
    ("expires_ms", "expires 500ms;"),
    ("expires_empty", 'expires "";'),
    ("expires_variable", "expires $nonexistent_var;"),
    ("redirect_word", "proxy_redirect a;"),
    ("redirect_default_http", "proxy_redirect default;"),
    ("redirect_default_before",
     "server {\n location / {\n  proxy_redirect default;\n  " + PROXY + "\n }\n }"),
    ("redirect_default_vars",
     "server {\n location / {\n  proxy_pass http://127.0.0.1:1/$arg_a;\n"
     "  proxy_redirect default;\n }\n }"),
    ("redirect_off_after", "proxy_redirect a b;\n proxy_redirect off;"),
    ("redirect_off_twice", "proxy_redirect off;\n proxy_redirect off;"),
    ("redirect_after_off", "proxy_redirect off;\n proxy_redirect a b;"),
    ("redirect_regex", 'proxy_redirect "~(" b;'),
    ("redirect_args", "proxy_redirect a b c;"),
    ("redirect_in_if", "server {\n location / {\n  if ($arg_a) {\n   proxy_redirect off;\n  }\n }\n }"),
    ("hide_args", "proxy_hide_header a b;"),
    ("pass_args", "proxy_pass_header;"),
    ("ignore_word", "proxy_ignore_headers foo;"),
    ("cookie_domain_word", "proxy_cookie_domain foo;"),
    ("cookie_domain_off_after", "proxy_cookie_domain a b;\n proxy_cookie_domain off;"),
    ("cookie_path_after_off", "proxy_cookie_path off;\n proxy_cookie_path a b;"),
    ("cookie_path_regex", 'proxy_cookie_path "~*(" b;'),
    ("method_duplicate", "proxy_method GET;\n proxy_method POST;"),
    ("method_args", "proxy_method a b;"),
    ("pass_request_headers_flag", "proxy_pass_request_headers maybe;"),
    ("set_body_args", "proxy_set_body a b;"),
    ("intercept_flag", "proxy_intercept_errors x;"),
]


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    expected, error = refused_like_nginx(tmp_path, body)
    if name == "expires_variable":
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line == 5
    elif "pcre2_compile() failed" in expected:
        # Python's regex engine words its reasons differently from PCRE2: same frame.
        assert error.message.startswith("pcre2_compile() failed: ")
        assert str(error).endswith(f' in "(" in {tmp_path / "main.conf"}:5')
    else:
        assert str(error) == expected


VALID = [
    "expires -1h;", "expires +1d;", "expires @12h30m;", "expires 0;", "expires 1y;",
    'expires "1h 30m";', "expires modified 1d;", "expires max;", "expires epoch;",
    "expires off;", "expires $arg_e;", "expires modified $arg_e;",
    "proxy_ignore_headers x-accel-expires X-Accel-Expires Cache-Control Vary;",
    "proxy_cookie_domain .a.example .b.example;\n proxy_cookie_path ~^/(.*)$ /x/$1;",
    "proxy_redirect ~*^http://([^/]+)/ /$1/;\n proxy_redirect http://$host/ /;",
    "server {\n location / {\n  if ($arg_a) {\n   expires 1h;\n  }\n }\n }",
    "server {\n location / {\n  " + PROXY + "\n  proxy_redirect default;\n"
    "  proxy_redirect http://a/ /b/;\n }\n }",
    "proxy_set_body $arg_b;\n proxy_method $arg_m;\n proxy_pass_request_headers off;",
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
