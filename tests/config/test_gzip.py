"""gzip and gzip_static directives: nginx's defaults and inheritance, its refusals word for word."""

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.config.nginx_check import assert_refused_like_nginx, nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"


def load(tmp_path, http):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + "http {\n" + http + "\n}\n")
    return load_config(str(path), str(tmp_path))


def test_defaults_are_nginx_s(tmp_path):
    config = load(tmp_path, "server { listen 127.0.0.1:8099; }")
    s = config.http.servers[0].settings
    assert (s.gzip, s.gzip_types, s.gzip_min_length, s.gzip_comp_level, s.gzip_proxied,
            s.gzip_vary, s.gzip_http_version, s.gzip_window, s.gzip_hash, s.gzip_static) == \
        (False, ("text/html",), 20, 1, frozenset({"off"}), False, 11, 15, 8, "off")


def test_levels_inherit_and_lists_add_up_at_one_level(tmp_path):
    config = load(tmp_path, """
        gzip on; gzip_types text/css; gzip_types application/json TEXT/CSS;
        gzip_proxied expired; gzip_proxied auth; gzip_disable msie6 "^curl"; gzip_window 8k;
        gzip_hash 2k; gzip_http_version 1.0; gzip_buffers 16 8k;
        server {
            listen 127.0.0.1:8099;
            location /a/ { gzip_comp_level 9; gzip_disable "Wget"; }
            location /b/ { gzip off; gzip_types *; gzip_static always; }
            location /c/ { gzip_types text/plain *; gzip_types text/css; }
        }""")
    a, b, c = config.http.servers[0].locations
    assert a.settings.gzip and a.settings.gzip_comp_level == 9
    assert a.settings.gzip_types == ("text/html", "text/css", "application/json")
    assert a.settings.gzip_proxied == {"expired", "auth"}
    assert a.settings.gzip_disable_msie6 and [r.pattern for r in a.settings.gzip_disable] == ["Wget"]
    assert (a.settings.gzip_window, a.settings.gzip_hash, a.settings.gzip_http_version) == (13, 3, 10)
    assert not b.settings.gzip and b.settings.gzip_types is None and b.settings.gzip_static == "always"
    assert c.settings.gzip_types is None
    assert any('"gzip_buffers" directive is accepted but not acted on' in w for w in config.warnings)
    assert any('duplicate MIME type "text/css"' in w for w in config.warnings)


REFUSED = [
    "gzip maybe;",
    "gzip on; gzip off;",
    "gzip_comp_level 10;",
    "gzip_comp_level 0;",
    "gzip_comp_level x;",
    "gzip_min_length -1;",
    "gzip_proxied sometimes;",
    "gzip_http_version 2.0;",
    "gzip_window 3k;",
    "gzip_hash 3k;",
    "gzip_buffers 4;",
    "gzip_buffers 0 4k;",
    "gzip_static maybe;",
    "gzip_static on; gzip_static off;",
    "gzip_vary yes;",
    "gzip_memlevel 8;",
    "server { listen 127.0.0.1:8099; location / { if ($uri) { gzip_static on; } } }",
]


@pytest.mark.nginx
@pytest.mark.parametrize("http", REFUSED)
def test_refused_like_nginx(tmp_path, http):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + "http {\n" + http + "\n}\n")
    assert_refused_like_nginx(tmp_path, path)


@pytest.mark.nginx
def test_bad_gzip_disable_regex_refused_with_place(tmp_path):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + 'http {\ngzip_disable "(";\n}\n')
    code, expected = nginx_refusal(tmp_path, path)
    assert code != 0 and expected.startswith("pcre2_compile() failed: ")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), str(tmp_path))
    assert info.value.message.startswith("pcre2_compile() failed: ")
    assert (info.value.file, info.value.line) == (str(path), 5)
