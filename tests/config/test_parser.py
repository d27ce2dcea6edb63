"""The parser: tree shape, structural errors, includes with globs, -g globals."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.config.parser import parse
from gateway.errors import ConfigError


def test_tree_shape(conf):
    path = conf.write("m.conf", "events {}\nhttp {\n server {\n  listen 80;\n }\n}\n")
    tree = parse(path).tree
    assert [d.name for d in tree] == ["events", "http"]
    http = tree[1]
    assert (http.file, http.line, http.end_line) == (path, 2, 6)
    server = http.block[0]
    assert server.name == "server" and server.line == 3
    assert server.block[0].name == "listen" and server.block[0].args == ["80"]
    assert server.block[0].block is None


def test_include_relative_to_main_directory_with_glob(conf):
    conf.write("sites/b.conf", "server { listen 2; }\n")
    conf.write("sites/a.conf", "server { listen 1; }\n")
    conf.write("sites/skip.txt", "bogus;\n")
    path = conf.write("etc/m.conf", "events {}\nhttp { include ../sites/*.conf; }\n")
    parsed = parse(path)
    servers = parsed.tree[1].block
    assert [s.block[0].args for s in servers] == [["1"], ["2"]]   # sorted, as glob() does
    assert servers[0].file.endswith("sites/a.conf")
    assert [f for f, _ in parsed.files][1:] == [str(conf.root / "etc/../sites/a.conf"),
                                                str(conf.root / "etc/../sites/b.conf")]


def test_include_glob_without_match_is_fine(conf):
    path = conf.write("m.conf", "events {}\nhttp { include nothing/*.conf; }\n")
    assert parse(path).tree[1].block == []


def test_include_missing_file(conf):
    path = conf.write("m.conf", "events {}\nhttp {\n include absent.conf;\n}\n")
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == (f'open() "{conf.root}/absent.conf" failed '
                               f'(2: No such file or directory) in {path}:3')


def test_error_inside_included_file_names_that_file(conf):
    inc = conf.write("inc.conf", "\n\nproxy_pas x;\n")
    path = conf.write("m.conf", "events {}\nhttp { server { include inc.conf; } }\n")
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == f'unknown directive "proxy_pas" in {inc}:3'


def test_unbalanced_brace_in_included_file(conf):
    inc = conf.write("inc.conf", "server {\n")
    path = conf.write("m.conf", "events {}\nhttp { include inc.conf; }\n")
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == f'unexpected end of file, expecting "}}" in {inc}:2'


@pytest.mark.parametrize("text,message", [
    ("events {}\n}\n", 'unexpected "}" in F:2'),
    ("events {\n", 'unexpected end of file, expecting "}" in F:2'),
    ("events {}\nhttp {\n server {\n  root x\n", 'unexpected end of file, expecting ";" or "}" in F:5'),
    ("events {}\nhttp;\n", 'directive "http" has no opening "{" in F:2'),
    ("events {}\nhttp {\n index a {}\n}\n", 'directive "index" is not terminated by ";" in F:3'),
    ("events {}\n{\n", 'unexpected "{" in F:2'),
    ("events {}\nhttp {\n server {\n  proxy_pas x;\n }\n}\n", 'unknown directive "proxy_pas" in F:4'),
    ("events {}\nhttp {\n listen 80;\n}\n", '"listen" directive is not allowed here in F:3'),
    ("events {}\nhttp {\n upstream u {\n  hash;\n }\n}\n",
     'invalid number of arguments in "hash" directive in F:4'),
    ("events {}\nhttp {\n server {\n  root a;\n  root b;\n }\n}\n",
     '"root" directive is duplicate in F:5'),
    ("events {}\ndaemon yes;\n",
     'invalid value "yes" in "daemon" directive, it must be "on" or "off" in F:2'),
    ("events {}\nhttp {\n server {\n  location / {\n   fastcgi_pass 127.0.0.1:9000;\n  }\n }\n}\n",
     '"fastcgi_pass" directive is not supported by this gateway in F:5'),
    ("events {}\nhttp {\n server {\n  limit_except GET { }\n }\n}\n",
     '"limit_except" directive is not allowed here in F:4'),
])
def test_structural_errors(conf, text, message):
    path = conf.write("m.conf", text)
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == message.replace("F", path)


def test_duplicates_counted_across_includes(conf):
    inc = conf.write("inc.conf", "root b;\n")
    path = conf.write("m.conf", "events {}\nhttp { server { root a; include inc.conf; } }\n")
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == f'"root" directive is duplicate in {inc}:1'


def test_globals_parsed_first(conf):
    path = conf.write("m.conf", "events {}\n")
    tree = parse(path, "daemon off; worker_processes 3;").tree
    assert [(d.name, d.file) for d in tree] == [
        ("daemon", "command line"), ("worker_processes", "command line"), ("events", path)]


def test_globals_errors_say_command_line(conf):
    path = conf.write("m.conf", "events {}\n")
    with pytest.raises(ConfigError) as info:
        parse(path, "listen 80;")
    assert str(info.value) == '"listen" directive is not allowed here in command line'


def test_types_block_holds_mime_lines(conf):
    path = conf.write("m.conf", "events {}\nhttp { types { text/html html htm; image/png png; } }\n")
    types = parse(path).tree[1].block[0]
    assert [(t.name, t.args) for t in types.block] == [("text/html", ["html", "htm"]),
                                                       ("image/png", ["png"])]


def test_include_of_itself_is_refused(conf):
    path = conf.write("m.conf", "events {}\nhttp {\n include inc.conf;\n}\n")
    inc = conf.write("inc.conf", "include inc.conf;\n")
    with pytest.raises(ConfigError) as info:
        parse(path)
    assert str(info.value) == (f'includes nested too deeply (more than 32) at "inc.conf" '
                               f'in {inc}:1')


def test_undecodable_bytes_are_replaced(conf):
    path = conf.root / "m.conf"
    path.write_bytes(b"events {}\n\xff;\n")
    with pytest.raises(ConfigError) as info:
        parse(str(path))
    assert str(info.value) == f'unknown directive "\ufffd" in {path}:2'


def test_bare_cr_is_not_a_line_end(conf):
    """Found by tests/config/test_config_properties.py: nginx counts lines by LF only."""
    path = conf.root / "m.conf"
    path.write_bytes(b"\x00\r")
    with pytest.raises(ConfigError) as info:
        parse(str(path))
    assert str(info.value) == f'unexpected end of file, expecting ";" or "}}" in {path}:1'
    path.write_bytes(b"events {}\r\nhttp {\r\n\rbad;\r\n}\r\n")
    with pytest.raises(ConfigError) as info:
        parse(str(path))
    assert str(info.value) == f'unknown directive "bad" in {path}:3'


def test_cr_inside_quotes_is_kept(conf):
    path = conf.write("m.conf", 'events {}\nhttp {\n log_format x "a\rb";\n}\n')
    http = parse(path).tree[1]
    assert http.block[0].args == ["x", "a\rb"]


def test_an_include_path_with_a_nul_is_a_config_error(tmp_path):
    """Found by fuzz/config.py: a NUL in a path made open() raise ValueError, a traceback for the user."""
    conf = tmp_path / "main.conf"
    conf.write_bytes(b"events {}\nhttp {\n    include mi\x00me.types;\n}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(conf), str(tmp_path))
    assert str(caught.value) == (f'open() "{tmp_path}/mi\\0me.types" failed (22: Invalid argument) '
                                 f'in {conf}:3')
