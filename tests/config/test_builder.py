"""The builder: directive values, nginx's inheritance, listen/upstream/proxy_pass rules."""

from __future__ import annotations

import os
import re

import pytest

from gateway.config import load_config
from gateway.config.model import AccessLog, AddHeader, Return, UpstreamServer
from gateway.config.values import parse_size, parse_time
from gateway.errors import ConfigError


def server(cfg, i=0):
    return cfg.http.servers[i]


def loc(cfg, path, i=0):
    """The location whose pattern is ``path`` (searching nested ones too)."""
    todo = list(server(cfg, i).locations)
    while todo:
        item = todo.pop(0)
        if item.pattern == path:
            return item
        todo.extend(item.children)
    raise KeyError(path)


# Values -------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("10", 10), ("512k", 524288), ("512K", 524288), ("1m", 1048576),
    ("2M", 2097152), ("1g", 1 << 30), ("1q", None), ("", None), ("k", None), ("-1", None)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("30", 30), ("30s", 30), ("1m", 60), ("500ms", 0.5), ("1h", 3600), ("1d", 86400),
    ("1h 30m", 5400), ("1m30s", 90), ("abc", None), ("", None), ("1x", None),
    ("1m30", 90), ("30 ", 30), ("1s ", 1), (" 1s", None), ("1s1s", None), ("1m1h", None),
    ("1 s", None), ("1.5", None), ("-1", None), ("1y", 31536000), ("1M", 2592000)])
def test_times(text, expected):
    assert parse_time(text) == expected


def test_millisecond_settings_refuse_months_and_years():
    assert parse_time("1y", long_units=False) is None
    assert parse_time("1M", long_units=False) is None
    assert parse_time("1w", long_units=False) == 604800


# Main and events ------------------------------------------------------------

def test_main_directives(conf):
    path = conf.write("m.conf", "user nobody nogroup;\nworker_processes 3;\npid run/g.pid;\n"
                      "daemon off;\nmaster_process off;\nerror_log logs/e.log warn;\n"
                      "error_log stderr;\nevents { worker_connections 64; }\n")
    cfg = load_config(path, str(conf.root))
    assert cfg.user == ("nobody", "nogroup")
    assert cfg.worker_processes == 3
    assert cfg.pid == str(conf.root / "run/g.pid")
    assert cfg.daemon is False and cfg.master_process is False
    assert [(e.path, e.level) for e in cfg.error_logs] == [
        (str(conf.root / "logs/e.log"), "warn"), ("stderr", "error")]
    assert cfg.worker_connections == 64
    assert cfg.http is None
    assert cfg.file == path and cfg.prefix == str(conf.root)


def test_defaults(conf):
    cfg = load_config(conf.write("m.conf", "events {}\n"), str(conf.root))
    assert (cfg.worker_processes, cfg.worker_connections, cfg.user, cfg.pid) == (1, 512, None, None)
    assert cfg.daemon and cfg.master_process and cfg.error_logs == [] and cfg.warnings == []


def test_worker_processes_auto(conf):
    cfg = load_config(conf.write("m.conf", "worker_processes auto;\nevents {}\n"),
                      str(conf.root))
    assert cfg.worker_processes == os.cpu_count()


def test_user_without_group(conf):
    cfg = load_config(conf.write("m.conf", "user www-data;\nevents {}\n"), str(conf.root))
    assert cfg.user == ("www-data", None)


def test_globals_text(conf):
    path = conf.write("m.conf", "events {}\n")
    cfg = load_config(path, str(conf.root), globals_text="daemon off; worker_processes 2;")
    assert cfg.daemon is False and cfg.worker_processes == 2
    with pytest.raises(ConfigError) as info:
        load_config(conf.write("m2.conf", "daemon on;\nevents {}\n"), str(conf.root),
                    globals_text="daemon off;")
    assert str(info.value) == f'"daemon" directive is duplicate in {conf.root}/m2.conf:1'


def test_relative_main_file_resolves_against_prefix(conf):
    conf.write("conf/m.conf", "events {}\nhttp { include inc.conf; }\n")
    conf.write("conf/inc.conf", "server { listen 127.0.0.1:9; }\n")
    cfg = load_config("conf/m.conf", str(conf.root))
    assert cfg.file == str(conf.root / "conf/m.conf")
    assert server(cfg).listens[0].port == 9


def test_text_dump_lists_every_file(conf):
    inc = conf.write("inc.conf", "server { listen 127.0.0.1:9; }")
    path = conf.write("m.conf", "events {}\nhttp { include inc.conf; }\n")
    cfg = load_config(path, str(conf.root))
    assert cfg.text == (f"# configuration file {path}:\nevents {{}}\nhttp {{ include inc.conf; }}\n\n"
                        f"# configuration file {inc}:\nserver {{ listen 127.0.0.1:9; }}\n")


# Server, listen, server_name -------------------------------------------------

@pytest.mark.parametrize("arg,host,port", [
    ("8081", "0.0.0.0", 8081), ("*:8081", "0.0.0.0", 8081), ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("127.0.0.1", "127.0.0.1", 80), ("[::]:80", "::", 80), ("[::1]:8080", "::1", 8080),
    ("[::1]", "::1", 80)])
def test_listen_forms(conf, arg, host, port):
    cfg = conf.load(f"http {{\n server {{\n  listen {arg};\n }}\n}}\n")
    (listen,) = server(cfg).listens
    assert (listen.host, listen.port, listen.default_server, listen.reuseport,
            listen.backlog, listen.ipv6only) == (host, port, False, False, 511, True)
    assert (listen.file, listen.line) == (str(conf.root / "main.conf"), 6)


def test_listen_hostname_resolves_every_address(conf):
    cfg = conf.load("http { server { listen localhost:8080; } }\n")
    hosts = [l.host for l in server(cfg).listens]
    assert "127.0.0.1" in hosts and all(l.port == 8080 for l in server(cfg).listens)


def test_listen_options(conf):
    cfg = conf.load("http { server { listen 127.0.0.1:1 default_server reuseport backlog=64;"
                    " listen [::1]:1 default ipv6only=off; } }\n")
    a, b = server(cfg).listens
    assert (a.default_server, a.reuseport, a.backlog) == (True, True, 64)
    assert (b.default_server, b.ipv6only) == (True, False)


@pytest.mark.parametrize("param", ["quic", "spdy"])
def test_listen_unsupported_options(conf, param):
    message = conf.error(f"http {{\n server {{\n  listen 443 {param};\n }}\n}}\n")
    assert message == (f'"listen" parameter "{param}" is not supported by this gateway '
                       f'in {conf.root}/main.conf:6')


def test_socket_options_shared_by_every_server_on_the_socket(conf):
    cfg = conf.load("http { server { listen 127.0.0.1:1 reuseport backlog=9; }"
                    " server { listen 127.0.0.1:1; } server { listen 127.0.0.1:2; } }\n")
    b, c = server(cfg, 1).listens[0], server(cfg, 2).listens[0]
    assert (b.reuseport, b.backlog) == (True, 9)
    assert (c.reuseport, c.backlog) == (False, 511)


def test_deep_nesting_is_an_error_not_a_traceback(conf):
    deep = "location / { " * 3000 + "}" * 3000
    message = conf.error(f"http {{ server {{ {deep} }} }}\n")
    assert message == f"blocks nested too deeply (more than 100) in {conf.root}/main.conf:4"


def test_nesting_up_to_the_limit_builds(conf):
    """Found by tests/config/test_config_properties.py: the error must carry file:line."""
    deep = "location / {\n" * 98 + "}" * 98          # with http and server: 100 blocks
    conf.load(f"http {{ server {{ {deep} }} }}\n")
    # One more on line 4 (the first after the helper's header): the 101st opens on line 101.
    message = conf.error(f"http {{ server {{ location / {{ {deep} }} }} }}\n")
    assert message == f"blocks nested too deeply (more than 100) in {conf.root}/main.conf:101"


def test_listen_default_depends_on_user(conf):
    cfg = conf.load("http { server { } }\n")
    (listen,) = server(cfg).listens
    assert (listen.host, listen.port) == ("0.0.0.0", 80 if os.geteuid() == 0 else 8000)


def test_server_names(conf):
    cfg = conf.load("http { server { server_name Example.COM *.b.org; server_name ~^(w+)$; }"
                    " server { } }\n")
    assert server(cfg).server_names == ["example.com", "*.b.org", "~^(w+)$"]
    assert server(cfg, 1).server_names == [""]


def test_server_level_header_settings(conf):
    cfg = conf.load("http { client_header_timeout 5s; large_client_header_buffers 2 4k;\n"
                    " server { client_header_buffer_size 2k; } server { client_header_timeout 7; } }\n")
    a, b = cfg.http.servers
    assert (a.client_header_timeout, a.client_header_buffer_size,
            a.large_client_header_buffers) == (5.0, 2048, (2, 4096))
    assert (b.client_header_timeout, b.client_header_buffer_size) == (7.0, 1024)


def test_header_name_settings(conf):
    """underscores_in_headers and ignore_invalid_headers: nginx's defaults, http inherited by servers."""
    cfg = conf.load("http { underscores_in_headers on;\n"
                    " server { } server { server_name b; underscores_in_headers off;\n"
                    " ignore_invalid_headers off; } }\n")
    a, b = cfg.http.servers
    assert (a.underscores_in_headers, a.ignore_invalid_headers) == (True, True)
    assert (b.underscores_in_headers, b.ignore_invalid_headers) == (False, False)
    assert not cfg.warnings
    default = conf.load("http { server { } }\n").http.servers[0]
    assert (default.underscores_in_headers, default.ignore_invalid_headers) == (False, True)


# Location settings and inheritance ----------------------------------------------

def test_every_location_directive(conf):
    cfg = conf.load("""http {
 log_format short "$remote_addr " '$status';
 server {
  location /a {
   proxy_pass http://127.0.0.1:9000;
   proxy_set_header X-Real-IP $remote_addr;
   proxy_set_header Host $host;
   proxy_http_version 1.1;
   proxy_connect_timeout 5s;
   proxy_read_timeout 1m;
   proxy_send_timeout 500ms;
   proxy_buffering off;
   proxy_request_buffering off;
   proxy_next_upstream error timeout http_502 non_idempotent;
   proxy_next_upstream_tries 3;
   proxy_next_upstream_timeout 10s;
   proxy_pass_request_body off;
   add_header X-A "1";
   add_header X-B $uri always;
   server_tokens off;
   client_max_body_size 10m;
   client_body_timeout 15;
   keepalive_timeout 30s 25;
   keepalive_requests 50;
   root /srv;
   index a.html b.html;
   try_files $uri /index.html;
   default_type text/html;
   etag off;
   types { text/x-a a; }
   access_log logs/a.log short;
   access_log /tmp/b.log;
  }
 }
}
""")
    s = loc(cfg, "/a").settings
    assert s.proxy_pass.upstream == "127.0.0.1:9000"
    assert s.proxy_set_headers == [("X-Real-IP", "$remote_addr"), ("Host", "$host"),
                                   ("Connection", "close")]
    assert s.proxy_http_version == "1.1"
    assert (s.proxy_connect_timeout, s.proxy_read_timeout, s.proxy_send_timeout) == (5, 60, 0.5)
    assert (s.proxy_buffering, s.proxy_request_buffering, s.proxy_pass_request_body) == (
        False, False, False)
    assert s.proxy_next_upstream == {"error", "timeout", "http_502", "non_idempotent"}
    assert (s.proxy_next_upstream_tries, s.proxy_next_upstream_timeout) == (3, 10)
    assert s.add_headers == [AddHeader("X-A", "1"), AddHeader("X-B", "$uri", True)]
    assert s.server_tokens is False and s.etag is False
    assert (s.client_max_body_size, s.client_body_timeout) == (10 << 20, 15)
    assert (s.keepalive_timeout, s.keepalive_requests) == (30, 50)
    assert (s.root, s.index, s.try_files) == ("/srv", ["a.html", "b.html"], ["$uri", "/index.html"])
    assert (s.default_type, s.types) == ("text/html", {"a": "text/x-a"})
    assert s.access_logs == [AccessLog(str(conf.root / "logs/a.log"), "$remote_addr $status"),
                             AccessLog("/tmp/b.log", cfg.http.log_formats["combined"])]
    assert cfg.http.log_formats["combined"].startswith("$remote_addr - $remote_user")


def test_defaults_are_nginx_defaults(conf):
    cfg = conf.load("http { server { location / { } } }\n")
    s = loc(cfg, "/").settings
    assert s.proxy_set_headers == [("Host", "$proxy_host"), ("Connection", "close")]
    assert s.root == str(conf.root / "html")
    assert s.index == ["index.html"] and s.try_files is None and s.access_logs == []
    assert s.proxy_next_upstream == {"error", "timeout"}
    assert (s.return_, s.proxy_pass, s.unikernel_pass) == (None, None, None)


def test_scalar_inheritance_http_server_location_nested(conf):
    cfg = conf.load("""http {
 client_max_body_size 2m;
 proxy_read_timeout 5;
 root /h;
 server {
  proxy_read_timeout 6;
  location /a {
   root /a;
   location /a/b {
    client_max_body_size 3m;
   }
  }
  location /c { }
 }
}
""")
    assert server(cfg).settings.proxy_read_timeout == 6 and server(cfg).settings.root == "/h"
    a, b, c = loc(cfg, "/a").settings, loc(cfg, "/a/b").settings, loc(cfg, "/c").settings
    assert (a.client_max_body_size, a.proxy_read_timeout, a.root) == (2 << 20, 6, "/a")
    assert (b.client_max_body_size, b.proxy_read_timeout, b.root) == (3 << 20, 6, "/a")
    assert (c.client_max_body_size, c.root) == (2 << 20, "/h")


def test_list_directives_inherited_only_when_level_defines_none(conf):
    cfg = conf.load("""http {
 add_header X-Http 1;
 proxy_set_header X-P http;
 access_log /tmp/h.log;
 server {
  location /inherit { }
  location /own {
   add_header X-Own 2;
   proxy_set_header X-Q own;
   access_log off;
  }
  location /nested {
   add_header X-N 3;
   location /nested/deeper { }
  }
 }
}
""")
    inherit, own = loc(cfg, "/inherit").settings, loc(cfg, "/own").settings
    assert [h.name for h in inherit.add_headers] == ["X-Http"]
    assert inherit.proxy_set_headers[0] == ("X-P", "http")
    assert [a.path for a in inherit.access_logs] == ["/tmp/h.log"]
    assert [h.name for h in own.add_headers] == ["X-Own"]
    assert own.proxy_set_headers == [("X-Q", "own"), ("Host", "$proxy_host"),
                                     ("Connection", "close")]
    assert own.access_logs == []
    assert [h.name for h in loc(cfg, "/nested/deeper").settings.add_headers] == ["X-N"]


def test_user_header_overrides_default(conf):
    cfg = conf.load('http { proxy_set_header host $host; proxy_set_header Connection "";'
                    ' server { location / { } } }\n')
    assert loc(cfg, "/").settings.proxy_set_headers == [("host", "$host"), ("Connection", "")]


def test_handlers_and_location_only_settings_not_inherited(conf):
    cfg = conf.load("""http {
 server {
  location /a {
   proxy_pass http://127.0.0.1:1;
   alias /x/;
   try_files $uri =404;
   location /a/b { }
  }
 }
}
""")
    b = loc(cfg, "/a/b").settings
    assert (b.proxy_pass, b.alias, b.try_files) == (None, None, None)


def test_server_level_return_applies_to_every_location(conf):
    cfg = conf.load("http { server { return 301 https://x$request_uri; location / { } } }\n")
    assert server(cfg).settings.return_ == Return(301, "https://x$request_uri")
    assert loc(cfg, "/").settings.return_ == Return(301, "https://x$request_uri")


def test_types_block_replaces_inherited_types(conf):
    conf.write("mime.types", "types { text/html html; image/png PNG; }\n")
    cfg = conf.load("http { include mime.types; server { location / { }"
                    " location /x { types { text/plain html; } } } }\n")
    assert loc(cfg, "/").settings.types == {"html": "text/html", "png": "image/png"}
    assert loc(cfg, "/x").settings.types == {"html": "text/plain"}


@pytest.mark.parametrize("args,expected", [
    ("200", Return(200)), ('200 "ok\\n"', Return(200, "ok\n")), ("444", Return(444)),
    ("301 /new", Return(301, "/new")), ("http://a/$uri", Return(302, "http://a/$uri")),
    ("https://a/", Return(302, "https://a/")), ("$scheme://a", Return(302, "$scheme://a"))])
def test_return_forms(conf, args, expected):
    cfg = conf.load(f"http {{ server {{ location / {{ return {args}; }} }} }}\n")
    assert loc(cfg, "/").settings.return_ == expected


def test_return_wins_over_proxy_pass(conf):
    cfg = conf.load("http { server { location / { proxy_pass http://127.0.0.1:1; return 204; } } }\n")
    s = loc(cfg, "/").settings
    assert s.return_ == Return(204) and s.proxy_pass is None


def test_paths_resolve_against_prefix(conf):
    cfg = conf.load("http { root www; server { location /a/ { alias files/; } location /v {"
                    " root /srv/$host; } } }\n")
    assert server(cfg).settings.root == str(conf.root / "www")
    assert loc(cfg, "/a/").settings.alias == str(conf.root / "files")
    assert loc(cfg, "/v").settings.root == "/srv/$host"


# Locations ------------------------------------------------------------------

def test_location_modifiers_and_regexes(conf):
    cfg = conf.load("""http {
 server {
  location = /exact { }
  location =/glued { }
  location ^~ /static/ { }
  location ~ \\.php$ { }
  location ~* \\.(JPG|png)$ { }
  location ~*\\.gif$ { }
  location @fallback { }
  location / { }
 }
}
""")
    got = [(l.modifier, l.pattern) for l in server(cfg).locations]
    assert got == [("=", "/exact"), ("=", "/glued"), ("^~", "/static/"), ("~", r"\.php$"),
                   ("~*", r"\.(JPG|png)$"), ("~*", r"\.gif$"), ("@", "@fallback"), ("", "/")]
    php, img = server(cfg).locations[3], server(cfg).locations[4]
    assert php.regex.search("/a.php") and not php.regex.search("/a.PHP")
    assert img.regex.search("/a.jpg") and img.regex.flags & re.IGNORECASE
    assert server(cfg).locations[0].regex is None


def test_nested_locations_allowed(conf):
    cfg = conf.load("http { server { location /a/ { location /a/b/ { location = /a/b/c { } }"
                    " location ~ \\.x$ { location ~ y { } } location /a/ { } } } }\n")
    a = server(cfg).locations[0]
    assert [c.pattern for c in a.children] == ["/a/b/", r"\.x$", "/a/"]
    assert a.children[0].children[0].modifier == "="
    assert a.children[1].children[0].pattern == "y"


def test_same_name_exact_and_prefix_are_not_duplicates(conf):
    cfg = conf.load("http { server { location = /x { } location /x { } location ~ /x { }"
                    " location ~ /x { } location @n { } location @n { } } }\n")
    assert len(server(cfg).locations) == 6


def test_bad_regex(conf):
    message = conf.error("http {\n server {\n  location ~ ( { }\n }\n}\n")
    assert message.startswith('pcre2_compile() failed: missing closing parenthesis in "("')
    assert message.endswith(f"in {conf.root}/main.conf:6")


# proxy_pass and upstreams ------------------------------------------------------

def test_proxy_pass_to_upstream_block_defined_later(conf):
    cfg = conf.load("http { server { location /v1/ { proxy_pass http://backend/api/; } }\n"
                    " upstream backend { server 127.0.0.1:9001; } }\n")
    pp = loc(cfg, "/v1/").settings.proxy_pass
    assert (pp.url, pp.upstream, pp.uri, pp.proxy_host, pp.has_variables) == (
        "http://backend/api/", "backend", "/api/", "backend", False)
    assert not cfg.http.upstreams["backend"].implicit


def test_proxy_pass_implicit_upstream(conf):
    cfg = conf.load("http { server { location /a { proxy_pass http://127.0.0.1:8080; }\n"
                    " location /b { proxy_pass http://localhost/x; }\n"
                    " location /c { proxy_pass http://127.0.0.1:8080/; } } }\n")
    a, b, c = (loc(cfg, p).settings.proxy_pass for p in ("/a", "/b", "/c"))
    assert (a.upstream, a.uri, a.proxy_host) == ("127.0.0.1:8080", None, "127.0.0.1:8080")
    assert (b.upstream, b.uri, b.proxy_host) == ("localhost:80", "/x", "localhost")
    assert c.upstream == "127.0.0.1:8080" and c.uri == "/"
    up = cfg.http.upstreams["127.0.0.1:8080"]
    assert up.implicit and up.servers == [UpstreamServer("127.0.0.1:8080", "127.0.0.1", 8080)]
    assert "127.0.0.1" in [s.host for s in cfg.http.upstreams["localhost:80"].servers]
    assert len(cfg.http.upstreams) == 2


def test_proxy_pass_with_variables(conf):
    cfg = conf.load("http { server { location / { proxy_pass http://$host:9000$uri; } } }\n")
    pp = loc(cfg, "/").settings.proxy_pass
    assert pp.has_variables and pp.url == "http://$host:9000$uri"
    assert cfg.http.upstreams == {}


def test_proxy_pass_https_with_variables_rejected(conf):
    message = conf.error("http {\n server {\n  location / {\n   proxy_pass https://$host;\n  }\n"
                         " }\n}\n")
    assert message == (f'"https" with variables in proxy_pass is not supported by this gateway '
                       f'in {conf.root}/main.conf:7')


def test_proxy_pass_without_uri_allowed_in_regex_location(conf):
    cfg = conf.load("http { server { location ~ /x { proxy_pass http://127.0.0.1:1; } } }\n")
    assert server(cfg).locations[0].settings.proxy_pass.uri is None


def test_upstream_block(conf):
    cfg = conf.load("""http {
 upstream app {
  server 127.0.0.1:9001 weight=3 max_fails=2 fail_timeout=30s max_conns=10;
  server 127.0.0.1:9002 backup;
  server 127.0.0.1:9003 down;
  server localhost:9004;
  keepalive 16;
  keepalive_timeout 30s;
  keepalive_requests 100;
  least_conn;
  health_check interval=2s uri=/healthz fails=3 passes=2 timeout=500ms;
 }
}
""")
    up = cfg.http.upstreams["app"]
    assert up.servers[0] == UpstreamServer("127.0.0.1:9001", "127.0.0.1", 9001, weight=3,
                                           max_fails=2, fail_timeout=30, max_conns=10)
    assert up.servers[1].backup and up.servers[2].down
    assert all(s.name == "localhost:9004" and s.port == 9004 for s in up.servers[3:])
    assert up.servers[3].host == "127.0.0.1"      # IPv4 first
    assert (up.keepalive, up.keepalive_timeout, up.keepalive_requests) == (16, 30, 100)
    assert up.balance.method == "least_conn"
    hc = up.health_check
    assert (hc.interval, hc.uri, hc.fails, hc.passes, hc.timeout) == (2, "/healthz", 3, 2, 0.5)
    assert (up.file, up.line, up.implicit) == (str(conf.root / "main.conf"), 5, False)


def test_upstream_defaults(conf):
    up = conf.load("http { upstream u { server 127.0.0.1; } }\n").http.upstreams["u"]
    assert up.servers == [UpstreamServer("127.0.0.1", "127.0.0.1", 80)]
    assert up.balance.method == "round_robin" and up.keepalive == 0 and up.health_check is None


@pytest.mark.parametrize("line,method,key,consistent,two,least_time", [
    ("ip_hash;", "ip_hash", None, False, False, "header"),
    ("hash $request_uri;", "hash", "$request_uri", False, False, "header"),
    ("hash $remote_addr consistent;", "hash", "$remote_addr", True, False, "header"),
    ("random;", "random", None, False, False, "header"),
    ("random two;", "random", None, False, True, "header"),
    ("random two least_conn;", "random", None, False, True, "header"),
    ("least_time last_byte;", "least_time", None, False, False, "last_byte"),
])
def test_balancing_methods(conf, line, method, key, consistent, two, least_time):
    b = conf.load(f"http {{ upstream u {{ server 127.0.0.1; {line} }} }}\n").http.upstreams["u"].balance
    assert (b.method, b.key, b.consistent, b.two, b.least_time) == (
        method, key, consistent, two, least_time)


def test_balancing_method_redefined_warns_and_last_wins(conf):
    cfg = conf.load("http {\n upstream u {\n  server 127.0.0.1;\n  least_conn;\n  ip_hash;\n }\n}\n")
    assert cfg.http.upstreams["u"].balance.method == "ip_hash"
    assert cfg.warnings == [f"load balancing method redefined in {conf.root}/main.conf:8"]


@pytest.mark.parametrize("method", ["ip_hash", "random"])
def test_backup_refused_with_some_methods(conf, method):
    message = conf.error(f"http {{\n upstream u {{\n  {method};\n  server 127.0.0.1 backup;\n }}\n}}\n")
    assert message == f'balancing method does not support parameter "backup" in {conf.root}/main.conf:7'


def test_upstream_host_not_found(conf):
    message = conf.error("http {\n upstream u {\n  server nonexistent.invalid:80;\n }\n}\n")
    assert message == f'host not found in upstream "nonexistent.invalid:80" in {conf.root}/main.conf:6'


# Unikernel pools ---------------------------------------------------------------

def test_unikernel_pool_may_scale_to_zero(conf):
    pool = conf.load("http { unikernel k { image x; instances 0 3; } }\n").http.unikernels["k"]
    assert (pool.min_instances, pool.max_instances) == (0, 3)


def test_unikernel_pool_and_pass(conf):
    cfg = conf.load("""http {
 unikernel kv {
  image kvcache;
  instances 2 8;
  spares 1;
  memory 32m;
  transport socketpair;
  accel tcg;
  balance hash $uri consistent;
  setting key secret;
  setting size 100;
 }
 unikernel site { image images/site.elf; }
 server {
  location /kv/ { unikernel_pass kv; }
  location /auth { unikernel_pass site header:Authorization; }
  location /b { unikernel_pass kv body; }
 }
}
""")
    kv, site = cfg.http.unikernels["kv"], cfg.http.unikernels["site"]
    assert (kv.image, kv.min_instances, kv.max_instances, kv.memory_mb) == ("kvcache", 2, 8, 32)
    assert (kv.spares, site.spares) == (1, 0)
    assert (kv.transport, kv.accel) == ("socketpair", "tcg")
    assert (kv.balance.method, kv.balance.key, kv.balance.consistent) == ("hash", "$uri", True)
    assert kv.settings == {"key": "secret", "size": "100"}
    assert (site.image, site.min_instances, site.max_instances) == (
        str(conf.root / "images/site.elf"), 1, 1)
    assert (loc(cfg, "/kv/").settings.unikernel_pass.pool,
            loc(cfg, "/kv/").settings.unikernel_pass.payload) == ("kv", "uri")
    assert loc(cfg, "/auth").settings.unikernel_pass.payload == "header:Authorization"
    assert loc(cfg, "/b").settings.unikernel_pass.payload == "body"


@pytest.mark.parametrize("body,message", [
    ("unikernel k {\n  image x;\n  transport pigeon;\n }", 'invalid value "pigeon" in "transport" directive in F:7'),
    ("unikernel k {\n  image x;\n  accel hvf;\n }", 'invalid value "hvf" in "accel" directive in F:7'),
    ("unikernel k {\n  image x;\n  instances 4 2;\n }", 'invalid value "2" in "instances" directive in F:7'),
    ("unikernel k {\n  image x;\n  instances 0;\n }", 'invalid value "0" in "instances" directive in F:7'),
    ("unikernel k {\n  image x;\n  spares 9;\n }", 'invalid value "9" in "spares" directive in F:7'),
    ("unikernel k {\n  image x;\n  spares -1;\n }", 'invalid value "-1" in "spares" directive in F:7'),
    ("unikernel k {\n  image x;\n  spares 1 2;\n }", 'invalid number of arguments in "spares" directive in F:7'),
    ("unikernel k {\n  image x;\n  prestart 9;\n }", 'invalid value "9" in "prestart" directive in F:7'),
    ("unikernel k {\n  image x;\n  prestart on;\n }", 'invalid value "on" in "prestart" directive in F:7'),
    ("unikernel k {\n  image x;\n  memory 10k;\n }", 'invalid value "10k" in "memory" directive in F:7'),
    ("unikernel k {\n  image x;\n  balance fastest;\n }", 'invalid parameter "fastest" in F:7'),
    ("unikernel k {\n  instances 1;\n }", 'no "image" is defined in unikernel "k" in F:5'),
    ("server {\n  location / {\n   unikernel_pass nope;\n  }\n }", 'host not found in unikernel "nope" in F:7'),
    ("unikernel k {\n  image x;\n }\n server {\n  location / {\n   unikernel_pass k bogus;\n  }\n }",
     'invalid parameter "bogus" in F:10'),
    ("unikernel k {\n  image x;\n }\n server {\n  location / {\n   unikernel_pass k;\n"
     "   proxy_pass http://127.0.0.1:1;\n  }\n }", '"unikernel_pass" directive is duplicate in F:10'),
])
def test_unikernel_errors(conf, body, message):
    assert conf.error(f"http {{\n {body}\n}}\n") == message.replace("F", str(conf.root / "main.conf"))


# Warnings and variables ---------------------------------------------------------

def test_accepted_but_not_acted_on(conf):
    cfg = conf.load("http {\n sendfile on;\n gzip_buffers 4 8k;\n server {\n  tcp_nodelay on;\n"
                    "  location / {\n   sendfile off;\n  }\n }\n}\n")
    f = conf.root / "main.conf"
    assert cfg.warnings == [f'"sendfile" directive is accepted but not acted on in {f}:5',
                            f'"gzip_buffers" directive is accepted but not acted on in {f}:6',
                            f'"tcp_nodelay" directive is accepted but not acted on in {f}:8',
                            f'"sendfile" directive is accepted but not acted on in {f}:10']


@pytest.mark.parametrize("body,line", [
    ("add_header X $nope;", 6), ("proxy_set_header X $nope;", 6), ("return 200 $nope;", 6),
    ("location / {\n   proxy_pass http://$nope;\n  }", 7)])
def test_unknown_variables_fail_at_load(conf, body, line):
    message = conf.error(f"http {{\n server {{\n  {body}\n }}\n}}\n")
    assert message == f'unknown "nope" variable in {conf.root}/main.conf:{line}'


def test_log_format_variables_checked(conf):
    message = conf.error("http {\n log_format x '$nope';\n}\n")
    assert message == f'unknown "nope" variable in {conf.root}/main.conf:5'


# The embedded default -----------------------------------------------------------

def test_embedded_default(tmp_path):
    cfg = load_config(None, str(tmp_path))
    (srv,) = cfg.http.servers
    assert [(l.host, l.port) for l in srv.listens] == [("127.0.0.1", 8080)]
    root = srv.settings.root
    assert os.path.isfile(os.path.join(root, "index.html"))
    assert srv.settings.types["html"] == "text/html"
    health = [l for l in srv.locations if l.pattern == "/health"][0]
    assert health.modifier == "=" and health.settings.return_ == Return(200, "ok\n")
    page, document = [l for l in srv.locations if l.pattern in ("/status", "/status.json")]
    assert page.settings.status_page == document.pattern and document.settings.status_json
    assert cfg.warnings == [] and cfg.text.startswith("# configuration file ")


def test_nginx_load_warnings(conf):
    cfg = conf.load("http {\n types {\n  text/html html;\n  text/plain html;\n }\n"
                    " server {\n  listen 127.0.0.1:1;\n  server_name a;\n }\n"
                    " server {\n  listen 127.0.0.1:1;\n  server_name a b;\n }\n}\n")
    assert cfg.warnings == [
        'duplicate extension "html", content type: "text/plain", previous content type: '
        f'"text/html" in {conf.root}/main.conf:7',
        'conflicting server name "a" on 127.0.0.1:1, ignored']
