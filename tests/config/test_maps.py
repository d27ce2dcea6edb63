"""map and split_clients blocks: what loads, and what is refused in nginx's words."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.config.model import MapBlock, SplitClients
from gateway.errors import ConfigError
from gateway.http.maps import murmur_hash2
from tests.config.nginx_check import nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"

REFUSED = [
    ("duplicate_key", "http {\n map $uri $x {\n  a 1;\n  A 2;\n }\n}\n"),
    ("duplicate_default", "http {\n map $uri $x {\n  default 1;\n  default 2;\n }\n}\n"),
    ("map_params", "http {\n map $uri $x {\n  a 1 2;\n }\n}\n"),
    ("map_one_word", "http {\n map $uri $x {\n  exact;\n }\n}\n"),
    ("map_name", "http {\n map $uri x {\n  a 1;\n }\n}\n"),
    ("map_wildcard", "http {\n map $uri $x {\n  hostnames;\n  a.*.com 1;\n }\n}\n"),
    ("map_wildcard_dup",
     "http {\n map $uri $x {\n  hostnames;\n  *.a.com 1;\n  *.a.com 2;\n }\n}\n"),
    ("map_dot_dup", "http {\n map $uri $x {\n  hostnames;\n  a.com 1;\n  .a.com 2;\n }\n}\n"),
    # With hostnames, nginx refuses ".." in any key, exact ones too (ngx_hash_add_key).
    ("map_double_dot", "http {\n map $host $x {\n  hostnames;\n  a..b.com 1;\n }\n}\n"),
    ("map_builtin", "http {\n map $uri $host {\n  a 1;\n }\n}\n"),
    ("map_in_server", "http {\n server {\n  map $uri $x {\n  }\n }\n}\n"),
    ("map_args", "http {\n map $uri {\n }\n}\n"),
    ("map_unknown_value", "http {\n map $uri $x {\n  a $nope;\n }\n}\n"),
    ("split_sum",
     "http {\n split_clients $uri $x {\n  60% a;\n  50% b;\n }\n}\n"),
    ("split_star_then_more",
     "http {\n split_clients $uri $x {\n  * a;\n  10% b;\n }\n}\n"),
    ("split_decimals", "http {\n split_clients $uri $x {\n  0.555% a;\n }\n}\n"),
    ("split_zero", "http {\n split_clients $uri $x {\n  0% a;\n }\n}\n"),
    ("split_no_percent", "http {\n split_clients $uri $x {\n  a;\n }\n}\n"),
    ("split_name", "http {\n split_clients $uri $ {\n  * a;\n }\n}\n"),
]
# nginx names no place for an unknown variable; we add file:line.
PLACE_ADDED = {"map_unknown_value"}



@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_likenginx_refusal(tmp_path, name, body):
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + body)
    code, expected = nginx_refusal(tmp_path, conf)
    assert code != 0
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    if name in PLACE_ADDED:
        assert info.value.message == expected and info.value.line is not None
    else:
        assert str(info.value) == expected


@pytest.mark.nginx
def test_bad_regex_refused_with_place(tmp_path):
    """PCRE2 explains a bad regex in its own words; the rest of the line is nginx's."""
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path)
                    + "http {\n map $uri $x {\n  ~(abc 1;\n }\n}\n")
    code, expected = nginx_refusal(tmp_path, conf)
    assert code != 0 and expected.startswith("pcre2_compile() failed: ")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert info.value.message.startswith("pcre2_compile() failed: ")
    assert info.value.message.endswith(' in "(abc"')
    assert (info.value.file, info.value.line) == (str(conf), 6)
    assert expected.endswith(f' in "(abc" in {conf}:6')


@pytest.mark.nginx
def test_valid_maps_load_in_both(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + r"""
http {
    map_hash_bucket_size 128;
    server { listen 127.0.0.1:1; location / { return 200 "$a $b $c $s"; } }
    map $host $a { hostnames; volatile; include maps/*.conf; default $b; .x.com 1;
                   www.y.* 2; \~tilde 3; ~*^(?<name>a)(b)$ $name$2; }
    map $uri $b { }
    map "$a$b" $c { default "x $a"; "" 0; }
    split_clients "${remote_addr}AAA" $s { 0.5% .one; 2.0% .two; 10% a b; * ""; * again; }
}
""")
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "one.conf").write_text("from.include inc;\n")
    code, message = nginx_refusal(tmp_path, conf)
    assert code == 0, message
    http = load_config(str(conf), str(tmp_path)).http
    a = http.variables["a"]
    assert isinstance(a, MapBlock) and a.hostnames and a.volatile
    assert a.exact == {"from.include": "inc", "x.com": "1", "~tilde": "3"}
    assert a.wildcard_head == {"x.com": "1"} and a.wildcard_tail == {"www.y": "2"}
    assert http.variables["name"] is None          # a named capture is a variable too
    s = http.variables["s"]
    assert isinstance(s, SplitClients)
    assert s.parts == [(0x147AE14, ".one"), (0x147AE14 + 0x51EB851, ".two"),
                       (0x147AE14 + 0x51EB851 + 0x19999999, "a"), (0, ""), (0, "again")]


def test_murmur_hash2_of_nothing_is_zero():
    """Seed 0 and no input leave nothing to mix (the buckets are checked against nginx)."""
    assert murmur_hash2(b"") == 0
