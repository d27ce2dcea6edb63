"""rewrite, return, set, if and break: what loads, and what is refused in nginx's words."""

from __future__ import annotations

import re

import pytest

from gateway.config import load_config
from gateway.config import rewrite as conf
from gateway.errors import ConfigError
from tests.config.nginx_check import nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"

REFUSED = [
    ("rewrite_flag", "http {\n server {\n  rewrite ^ /x bogus;\n }\n}\n"),
    ("rewrite_args", "http {\n server {\n  rewrite ^;\n }\n}\n"),
    ("rewrite_in_http", "http {\n rewrite ^ /x;\n}\n"),
    ("rewrite_unknown_variable", "http {\n server {\n  rewrite ^ /$nope;\n }\n}\n"),
    ("if_unknown_variable", "http {\n server {\n  if ($a) {\n  }\n }\n}\n"),
    ("if_no_closing", "http {\n server {\n  if ($uri {\n  }\n }\n}\n"),
    ("if_operator", "http {\n server {\n  if ($uri == a) {\n  }\n }\n}\n"),
    ("if_file_test", "http {\n server {\n  if (-q a) {\n  }\n }\n}\n"),
    ("if_too_many", "http {\n server {\n  if ($uri = a b) {\n  }\n }\n}\n"),
    ("if_not_variable", "http {\n server {\n  if (a) {\n  }\n }\n}\n"),
    ("if_empty", "http {\n server {\n  if () {\n  }\n }\n}\n"),
    ("if_no_paren", "http {\n server {\n  if $uri {\n  }\n }\n}\n"),
    ("if_nested", "http {\n server {\n  location / {\n   if ($uri) {\n    if ($uri) {\n"
                  "    }\n   }\n  }\n }\n}\n"),
    ("if_server_proxy", "http {\n server {\n  if ($uri) {\n   proxy_pass http://127.0.0.1;\n"
                        "  }\n }\n}\n"),
    ("if_proxy_uri", "http {\n server {\n  location / {\n   if ($uri) {\n"
                     "    proxy_pass http://127.0.0.1/x;\n   }\n  }\n }\n}\n"),
    ("if_in_http", "http {\n if ($uri) {\n }\n}\n"),
    ("set_args", "http {\n server {\n  set $a;\n }\n}\n"),
    ("set_name", "http {\n server {\n  set a b;\n }\n}\n"),
    ("set_builtin", "http {\n server {\n  set $host 1;\n }\n}\n"),
    ("set_unknown_value", "http {\n server {\n  set $a $nope;\n }\n}\n"),
    ("break_args", "http {\n server {\n  break x;\n }\n}\n"),
    ("rewrite_log_flag", "http {\n rewrite_log maybe;\n}\n"),
    ("return_in_if_code", "http {\n server {\n  if ($uri) {\n   return abc;\n  }\n }\n}\n"),
]
# nginx names no place for an unknown variable; we add file:line.
PLACE_ADDED = {"rewrite_unknown_variable", "if_unknown_variable", "set_unknown_value"}



@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_likenginx_refusal(tmp_path, name, body):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + body)
    code, expected = nginx_refusal(tmp_path, path)
    assert code != 0
    with pytest.raises(ConfigError) as info:
        load_config(str(path), str(tmp_path))
    if name in PLACE_ADDED:
        assert info.value.message == expected and info.value.line is not None
    else:
        assert str(info.value) == expected


@pytest.mark.nginx
@pytest.mark.parametrize("line", ["rewrite (a /x;", "if ($uri ~ (a) { }", "if ($uri !~* (a) { }"])
def test_bad_regex_refused_with_place(tmp_path, line):
    """PCRE2 explains a bad regex in its own words; the rest of the line is nginx's."""
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + f"http {{\n server {{\n  {line}\n }}\n}}\n")
    code, expected = nginx_refusal(tmp_path, path)
    assert code != 0 and expected.startswith("pcre2_compile() failed: ")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), str(tmp_path))
    assert info.value.message.startswith("pcre2_compile() failed: ")
    assert (info.value.file, info.value.line) == (str(path), 6)


@pytest.mark.nginx
def test_scripts_load_in_both(tmp_path):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + r"""
http {
    rewrite_log on;
    uninitialized_variable_warn off;
    server {
        listen 127.0.0.1:1;
        rewrite ^/a/(?<rest>.*)$ /b/$rest last;
        set $s 1;
        if ($http_x) { return 403; }
        location / {
            rewrite ^ https://example.com$request_uri? permanent;
            if ( $s ) { set $t "$s$rest"; break; }
            if ($uri ~* "^/x(\d+)$") { return 302 /y/$1; }
            if (!-e $request_filename) { rewrite ^ /index.html; }
            return 200 "$t";
        }
    }
}
""".replace("$request_filename", "$document_root$uri"))
    code, message = nginx_refusal(tmp_path, path)
    assert code == 0, message
    server = load_config(str(path), str(tmp_path)).http.servers[0]
    script = server.settings.rewrite
    assert [type(op) for op in script.ops] == [conf.RewriteOp, conf.SetOp, conf.IfOp]
    assert script.rewrite_log
    location = server.locations[0]
    ops = location.settings.rewrite.ops
    assert ops[0].redirect == 301 and not ops[0].keep_args
    assert ops[1].condition.kind == "variable" and ops[1].settings is not None
    assert ops[2].condition.kind == "~" and ops[2].condition.regex.flags & re.IGNORECASE
    assert ops[3].condition.kind == "!-e"
    assert isinstance(ops[4], conf.ReturnOp)
    # The location's return belongs to its script, not to its content.
    assert location.settings.return_ is None
