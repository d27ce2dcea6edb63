"""Side by side with real nginx: geo blocks give nginx's errors and warnings, with file:line,
and are accepted where nginx accepts them."""

from __future__ import annotations

import re
import subprocess

import pytest

from gateway.config import load_config
from tests.config.test_nginx_wording import (NGINX, accepted_like_nginx, http_conf,
                                             refused_like_nginx)

pytestmark = pytest.mark.nginx

CASES = [
    ("no_dollar", "geo g { }"),
    ("no_dollar_second", "geo $a g { }"),
    ("no_dollar_first", "geo a $g { }"),
    ("empty_name", "geo $ { }"),
    ("empty_source", "geo $ $g { }"),
    ("empty_word", 'geo "" { }'),
    ("arguments", "geo $a $b $c { }"),
    ("no_arguments", "geo { }"),
    ("no_block", "geo $g;"),
    ("in_server", "server {\n geo $g { }\n }"),
    ("builtin", "geo $remote_addr { }"),
    ("unknown_source", "geo $nonexistent_var $g { }"),
    ("one_word", "geo $g {\n 10.0.0.0/8;\n }"),
    ("three_words", "geo $g {\n 10.0.0.0/8 a b;\n }"),
    ("volatile", "geo $g {\n volatile;\n }"),           # nginx 1.29.3's, not 1.22's
    ("include_two", "geo $g {\n include a b;\n }"),
    ("include_missing", "geo $g {\n include missing.conf;\n }"),
    ("include_glob", "geo $g {\n include *.conf;\n }"),   # 1.22 opens the name as it is
    ("block_inside", "geo $g {\n a {\n }\n }"),
    ("bad_network", "geo $g {\n 10.0.0.300 a;\n }"),
    ("bad_mask", "geo $g {\n 10.0.0.0/33 a;\n }"),
    ("empty_mask", "geo $g {\n 10.0.0.0/ a;\n }"),
    ("signed_mask", "geo $g {\n 10.0.0.0/+8 a;\n }"),
    ("all_ones_masked", "geo $g {\n 255.255.255.255/32 a;\n }"),
    ("bad_v6", "geo $g {\n 1::2::3 a;\n }"),
    ("short_v6", "geo $g {\n :1:2:3:4:5:6:7 a;\n }"),
    ("long_v6", "geo $g {\n 1:2:3:4:5:6:7:8:9 a;\n }"),
    ("v6_tail_late", "geo $g {\n 1:2:3:4:5:6:7:1.2.3.4 a;\n }"),
    ("bad_v6_mask", "geo $g {\n ::1/129 a;\n }"),
    ("bad_delete", "geo $g {\n delete nowhere;\n }"),
    ("bad_proxy", "geo $g {\n proxy 10.0.0.0/40;\n }"),
    ("ranges_late", "geo $g {\n 10.0.0.0/8 a;\n ranges;\n }"),
    ("ranges_after_default", "geo $g {\n default a;\n ranges;\n }"),
    ("ranges_after_delete", "geo $g {\n delete 10.0.0.0/8;\n ranges;\n }"),
    ("range_no_dash", "geo $g {\n ranges;\n 10.0.0.1 a;\n }"),
    ("range_reversed", "geo $g {\n ranges;\n 10.0.0.2-10.0.0.1 a;\n }"),
    ("range_all_ones", "geo $g {\n ranges;\n 10.0.0.0-255.255.255.255 a;\n }"),
    ("range_v6", "geo $g {\n ranges;\n ::1-::2 a;\n }"),
    ("range_cidr", "geo $g {\n ranges;\n 10.0.0.0/8 a;\n }"),
    ("range_bad_delete", "geo $g {\n ranges;\n delete 10.0.0.1;\n }"),
    ("range_overlap", "geo $g {\n ranges;\n 10.0.0.0-10.0.0.9 a;\n 10.0.0.5-10.0.0.20 b;\n }"),
    ("range_overlap_wide",
     "geo $g {\n ranges;\n 10.0.5.0-10.0.5.9 a;\n 10.0.0.0-10.1.0.0 b;\n }"),
    ("range_overlap_included",
     "geo $g {\n ranges;\n 10.0.0.0-10.0.0.9 a;\n include r.conf;\n }"),
]

# Included files some cases name, written beside main.conf.
FILES = {"r.conf": "10.0.0.1-10.0.0.10 b;\n"}


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    for file, text in FILES.items():
        (tmp_path / file).write_text(text)
    expected, error = refused_like_nginx(tmp_path, body)
    if name == "unknown_source":
        # nginx names no place for this one; we add file:line, which is strictly more.
        assert error.message == expected and error.line == 5
    else:
        assert str(error) == expected


WARNED = [
    "geo $g {\n default a;\n default b;\n }",
    "geo $g {\n 10.0.0.0/8 x;\n 10.0.0.0/8 y;\n 10.0.0.1/8 z;\n }",
    # the old value named is the one the address finds: here the /24's
    "geo $g {\n 10.0.0.0/24 x;\n 10.0.0.0/8 y;\n 10.0.0.0/8 z;\n }",
    "geo $g {\n ::1 a;\n ::1/128 b;\n 2001:db8::1/32 c;\n }",
    # preallocated nodes (the first six levels) delete quietly, others warn
    "geo $g {\n delete 0.0.0.0/6;\n delete 4.0.0.0/6;\n delete 1.0.0.0/8;\n"
    " delete 0.0.0.0/5;\n delete 8.0.0.0/5;\n }",
    "geo $g {\n delete 0.0.0.0/0;\n default x;\n delete 0.0.0.0/0;\n delete ::/0;\n"
    " delete ::/0;\n }",
    "geo $g {\n 10.0.0.0/8 a;\n 10.1.0.0/16 b;\n delete 10.0.0.0/8;\n delete 10.0.0.0/8;\n"
    " delete 10.1.0.0/16;\n delete 10.1.0.0/16;\n }",
    "geo $g {\n proxy 10.0.0.1/8;\n proxy ::1/64;\n }",
    "geo $g {\n ranges;\n default a;\n default b;\n }",
    "geo $g {\n ranges;\n 10.0.0.0-10.0.0.9 a;\n 10.0.0.0-10.0.0.9 b;\n"
    " 10.1.0.0-10.2.0.0 c;\n 10.1.0.0-10.2.0.0 d;\n }",
    "geo $g {\n ranges;\n delete 10.0.0.0-10.0.0.9;\n 10.0.0.0-10.0.0.9 a;\n"
    " delete 10.0.0.0-10.0.0.9;\n delete 10.0.0.0-10.0.0.9;\n 10.0.0.0-10.1.0.5 b;\n"
    " delete 10.0.0.0-10.0.255.255;\n delete 10.0.0.0-10.1.0.5;\n }",
    "geo $g {\n include w.conf;\n }",
]

WARNED_FILES = {"w.conf": "10.0.0.0/8 x;\n10.0.0.0/8 y;\n"}


def nginx_warnings(tmp_path, conf) -> list[str]:
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return re.findall(r"\[warn\] \d+#\d+: (.*)$", proc.stderr, re.M)


@pytest.mark.parametrize("body", WARNED)
def test_same_warnings_as_nginx(tmp_path, body):
    for file, text in WARNED_FILES.items():
        (tmp_path / file).write_text(text)
    conf = http_conf(tmp_path, body)
    expected = nginx_warnings(tmp_path, conf)
    assert expected
    assert load_config(str(conf), str(tmp_path)).warnings == expected


VALID = [
    "geo $g { }",
    "geo $arg_ip $g {\n default x;\n 10.0.0.0/8 y;\n }",
    "geo $g {\n 255.255.255.255 none;\n 1.2.3. odd;\n 01.02.03.4 zeros;\n ::ffff:1.2.3.4 m;\n"
    " :1:2:3:4:5:6:7:8 lead;\n 1:2:3:4:5:6:1.2.3.4 tail;\n }",
    "geo $g {\n proxy 10.0.0.0/8;\n proxy_recursive;\n ranges;\n 1.0.0.0-1.0.0.9 a;\n }",
    "geo $g {\n ranges;\n ranges;\n default a;\n 1.0.0.0-1.255.255.255 a;\n"
    " 1.2.0.0-1.2.255.255 b;\n 1.2.3.4-1.2.3.4 c;\n }",
    "map $uri $m { default 1.2.3.4; }\n geo $m $g { default x; }\n geo $g $h { }",
    "geo $g { }\n geo $g { default again; }",
    "geo $g { default x; }\n server {\n location / {\n  set $g y;\n  return 200 $g;\n }\n }",
    'geo $g {\n default "$not_a_variable";\n 10.0.0.0/8 "a b";\n }',
]


@pytest.mark.parametrize("body", VALID)
def test_accepted_like_nginx(tmp_path, body):
    accepted_like_nginx(tmp_path, body)
