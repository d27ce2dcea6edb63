"""Side by side with real nginx: for broken configs our message is nginx's message."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from gateway.config import directives, load_config
from gateway.errors import ConfigError

pytestmark = pytest.mark.nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# (name, text after the pid/error_log/events header).  Every case fails in nginx.
CASES = [
    ("unknown", "http {\n server {\n  proxy_pas x;\n }\n}\n"),
    ("not_allowed", "http {\n proxy_pass http://127.0.0.1;\n}\n"),
    ("args_hash", "http {\n upstream u {\n  server 127.0.0.1;\n  hash;\n }\n}\n"),
    ("duplicate_root", "http {\n server {\n  root a;\n  root b;\n }\n}\n"),
    ("unexpected_brace", "http {\n}\n}\n"),
    ("eof_brace", "http {\n server {\n"),
    ("eof_semicolon", "http {\n server {\n  root a"),
    ("no_opening", "http {\n server;\n}\n"),
    ("http_no_opening", "http;\n"),
    ("not_terminated", "http {\n root a {\n }\n}\n"),
    ("unexpected_semicolon", "http {\n ;\n}\n"),
    ("time_invalid", "http {\n keepalive_timeout abc;\n}\n"),
    ("size_invalid", "http {\n client_max_body_size 1q;\n}\n"),
    ("number_invalid", "http {\n keepalive_requests x;\n}\n"),
    ("flag_invalid", "http {\n proxy_buffering maybe;\n}\n"),
    ("host_not_found", "http {\n upstream u {\n  server nonexistent.invalid;\n }\n}\n"),
    ("proxy_host_not_found",
     "http {\n server {\n  listen 127.0.0.1:1;\n  location / {\n"
     "   proxy_pass http://nonexistent.invalid;\n  }\n }\n}\n"),
    ("upstream_invalid_port", "http {\n upstream u {\n  server 127.0.0.1:;\n }\n}\n"),
    ("proxy_invalid_port",
     "http {\n server {\n  location / {\n   proxy_pass http://127.0.0.1:x;\n  }\n }\n}\n"),
    ("proxy_no_host", "http {\n server {\n  location / {\n   proxy_pass http://;\n  }\n }\n}\n"),
    ("proxy_prefix", "http {\n server {\n  location / {\n   proxy_pass 127.0.0.1;\n  }\n }\n}\n"),
    ("listen_port", "http {\n server {\n  listen 127.0.0.1:abc;\n }\n}\n"),
    ("listen_port_zero", "http {\n server {\n  listen 0;\n }\n}\n"),
    ("listen_v6_port", "http {\n server {\n  listen [::1]:;\n }\n}\n"),
    ("listen_param", "http {\n server {\n  listen 127.0.0.1:1 bogus;\n }\n}\n"),
    ("listen_backlog", "http {\n server {\n  listen 127.0.0.1:1 backlog=x;\n }\n}\n"),
    ("listen_host", "http {\n server {\n  listen nonexistent.invalid:80;\n }\n}\n"),
    ("default_server",
     "http {\n server {\n  listen 127.0.0.1:1 default_server;\n }\n"
     " server {\n  listen 127.0.0.1:1 default_server;\n }\n}\n"),
    ("duplicate_location",
     "http {\n server {\n  location /x {\n  }\n  location /x {\n  }\n }\n}\n"),
    ("outside_location",
     "http {\n server {\n  location /a {\n   location /b {\n   }\n  }\n }\n}\n"),
    ("outside_regex",
     "http {\n server {\n  location ~ a {\n   location /b {\n   }\n  }\n }\n}\n"),
    ("exact_outside",
     "http {\n server {\n  location /a {\n   location = /b {\n   }\n  }\n }\n}\n"),
    ("duplicate_prefix_kinds",
     "http {\n server {\n  location /a {\n  }\n  location ^~ /a {\n  }\n }\n}\n"),
    ("duplicate_exact",
     "http {\n server {\n  location = /a {\n  }\n  location = /a {\n  }\n }\n}\n"),
    ("uri_in_regex_child",
     "http {\n server {\n  location /a {\n   location ~ b {\n"
     "    proxy_pass http://127.0.0.1/x;\n   }\n  }\n }\n}\n"),
    ("inside_exact",
     "http {\n server {\n  location = /a {\n   location /a/b {\n   }\n  }\n }\n}\n"),
    ("inside_named",
     "http {\n server {\n  location @a {\n   location /a/b {\n   }\n  }\n }\n}\n"),
    ("named_nested",
     "http {\n server {\n  location /a {\n   location @b {\n   }\n  }\n }\n}\n"),
    ("location_modifier", "http {\n server {\n  location ^^ /a {\n  }\n }\n}\n"),
    ("location_args", "http {\n server {\n  location a b c {\n  }\n }\n}\n"),
    ("uri_in_regex",
     "http {\n server {\n  location ~ a {\n   proxy_pass http://127.0.0.1/x;\n  }\n }\n}\n"),
    ("uri_in_named",
     "http {\n server {\n  location @n {\n   proxy_pass http://127.0.0.1/x;\n  }\n }\n}\n"),
    ("unknown_variable", "http {\n server {\n  return 200 $foo;\n }\n}\n"),
    ("unknown_variable_root", "http {\n root $foo;\n}\n"),
    ("unknown_variable_try_files", "http {\n server {\n  try_files $foo =404;\n }\n}\n"),
    ("unknown_variable_index", "http {\n index $foo;\n}\n"),
    ("unknown_variable_access_log", "http {\n access_log /tmp/$foo;\n}\n"),
    ("unknown_variable_alias",
     "http {\n server {\n  location / {\n   alias /$foo;\n  }\n }\n}\n"),
    ("upstream_param", "http {\n upstream u {\n  server 127.0.0.1 bogus;\n }\n}\n"),
    ("upstream_weight", "http {\n upstream u {\n  server 127.0.0.1 weight=0;\n }\n}\n"),
    ("upstream_fail_timeout",
     "http {\n upstream u {\n  server 127.0.0.1 fail_timeout=x;\n }\n}\n"),
    ("backup_with_hash",
     "http {\n upstream u {\n  hash $remote_addr;\n  server 127.0.0.1 backup;\n }\n}\n"),
    ("no_servers", "http {\n upstream u {\n  least_conn;\n }\n}\n"),
    ("random_param", "http {\n upstream u {\n  server 127.0.0.1;\n  random three;\n }\n}\n"),
    ("hash_param", "http {\n upstream u {\n  server 127.0.0.1;\n  hash $x foo;\n }\n}\n"),
    ("keepalive_zero", "http {\n upstream u {\n  server 127.0.0.1;\n  keepalive 0;\n }\n}\n"),
    ("duplicate_upstream",
     "http {\n upstream u {\n  server 127.0.0.1;\n }\n upstream u {\n  server 127.0.0.1;\n }\n}\n"),
    ("upstream_port",
     "http {\n upstream u {\n  server 127.0.0.1;\n }\n server {\n  location / {\n"
     "   proxy_pass http://u:8080;\n  }\n }\n}\n"),
    ("include_missing", "http {\n include {tmp}/nonexistent.conf;\n}\n"),
    ("root_after_alias",
     "http {\n server {\n  location / {\n   alias b;\n   root c;\n  }\n }\n}\n"),
    ("alias_after_root",
     "http {\n server {\n  location / {\n   root c;\n   alias b;\n  }\n }\n}\n"),
    ("add_header_param", "http {\n server {\n  add_header a b c;\n }\n}\n"),
    ("add_header_args", "http {\n server {\n  add_header a b c d;\n }\n}\n"),
    ("return_code", "http {\n server {\n  return abc;\n }\n}\n"),
    ("return_code_big", "http {\n server {\n  return 1000;\n }\n}\n"),
    ("log_level", "http {\n error_log {tmp}/x.log bogus;\n}\n"),
    ("log_format_unknown", "http {\n access_log {tmp}/a.log nofmt;\n}\n"),
    ("log_format_dup", "http {\n log_format a b;\n log_format a c;\n}\n"),
    ("log_format_combined", "http {\n log_format combined b;\n}\n"),
    ("http_version", "http {\n proxy_http_version 2.0;\n}\n"),
    ("next_upstream", "http {\n proxy_next_upstream foo;\n}\n"),
    ("large_buffers", "http {\n large_client_header_buffers 4 x;\n}\n"),
    ("worker_processes", "worker_processes x;\n"),
    ("worker_processes_dup", "worker_processes 1;\nworker_processes 2;\n"),
    ("events_dup", "events {\n}\n"),
    ("events_in_http", "http {\n events {\n }\n}\n"),
    ("worker_connections_main", "worker_connections 5;\n"),
    ("daemon_flag", "daemon maybe;\n"),
    ("user_args", "user a b c;\n"),
    ("listen_invalid_host", "http {\n server {\n  listen [::1]x;\n }\n}\n"),
    ("listen_open_bracket", "http {\n server {\n  listen [::1;\n }\n}\n"),
    ("listen_no_host", 'http {\n server {\n  listen "";\n }\n}\n'),
    ("duplicate_listen", "http {\n server {\n  listen 127.0.0.1:1;\n  listen 127.0.0.1:1;\n }\n}\n"),
    ("duplicate_listen_options",
     "http {\n server {\n  listen 127.0.0.1:1 reuseport;\n }\n"
     " server {\n  listen 127.0.0.1:1 backlog=5;\n }\n}\n"),
    ("upstream_invalid_host", "http {\n upstream u {\n  server [::1]x;\n }\n}\n"),
    ("proxy_invalid_host",
     "http {\n server {\n  location / {\n   proxy_pass http://[::1]x;\n  }\n }\n}\n"),
    ("quote_eof", 'http {\n "ab'),
    ("quote_then_char", 'http {\n default_type "a"b;\n}\n'),
]

PLACE_ADDED = {"unknown_variable", "unknown_variable_root", "unknown_variable_try_files",
               "unknown_variable_index", "unknown_variable_access_log",
               "unknown_variable_alias"}


def nginx_message(tmp_path, conf: str) -> str:
    """Run ``nginx -t`` on ``conf``; return its [emerg] message."""
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", conf],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stderr
    for line in proc.stderr.splitlines():
        m = re.search(r"\[emerg\] \d+#\d+: (.*)$", line)
        if m:
            return m.group(1)
    raise AssertionError(f"no [emerg] line in: {proc.stderr}")


def http_conf(tmp_path, body: str):
    """main.conf holding ``body`` in an http block (the body starts on line 5)."""
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n {body}\n}}\n")
    return conf


def refused_like_nginx(tmp_path, body: str):
    """(nginx's [emerg] message, our ConfigError) for ``body`` in an http block."""
    conf = http_conf(tmp_path, body)
    expected = nginx_message(tmp_path, str(conf))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    return expected, info.value


def accepted_like_nginx(tmp_path, body: str):
    """``body`` in an http block passes nginx -t and loads here."""
    conf = http_conf(tmp_path, body)
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    load_config(str(conf), str(tmp_path))


@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
def test_same_message_as_nginx(tmp_path, name, body):
    header = f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
    conf = tmp_path / "main.conf"
    conf.write_text(header + body.replace("{tmp}", str(tmp_path)))
    expected = nginx_message(tmp_path, str(conf))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    if name in PLACE_ADDED:
        # nginx names no place for these; we add file:line, which is strictly more.
        assert info.value.message == expected and info.value.line is not None
    else:
        assert str(info.value) == expected


def test_no_events_section_like_nginx(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n")
    expected = nginx_message(tmp_path, str(conf))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert str(info.value) == expected == 'no "events" section in configuration'


def test_missing_main_file_like_nginx(tmp_path):
    missing = str(tmp_path / "absent.conf")
    proc = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", missing],
                          capture_output=True, text=True, timeout=30)
    expected = re.search(r"\[emerg\] \d+#\d+: (.*)$", proc.stderr, re.M).group(1)
    with pytest.raises(ConfigError) as info:
        load_config(missing, str(tmp_path))
    assert str(info.value) == expected


def test_globals_duplicate_like_nginx(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                    "events {}\nworker_processes 2;\n")
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf),
                           "-g", "worker_processes 1;"], capture_output=True, text=True,
                          timeout=30)
    expected = re.search(r"\[emerg\] \d+#\d+: (.*)$", proc.stderr, re.M).group(1)
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path), globals_text="worker_processes 1;")
    assert str(info.value) == expected


def test_globals_unknown_like_nginx(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n")
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf),
                           "-g", "bogus 1;"], capture_output=True, text=True, timeout=30)
    expected = re.search(r"\[emerg\] \d+#\d+: (.*)$", proc.stderr, re.M).group(1)
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path), globals_text="bogus 1;")
    assert str(info.value) == expected


# Valid configs: nginx accepts them, and so do we.
VALID = [
    "http {\n include {tmp}/nothing/*.conf;\n}\n",
    "http {\n server {\n  listen 127.0.0.1:1;\n }\n server {\n  listen 127.0.0.1:1 reuseport;\n }\n}\n",
    "http {\n upstream u {\n  server 127.0.0.1:1 weight=2 max_fails=0 fail_timeout=5s;\n"
    "  least_conn;\n  keepalive 8;\n }\n server {\n  listen 127.0.0.1:1;\n"
    "  location = /x {\n   return 200 \"a\\n\";\n  }\n  location ~* \\.png$ {\n"
    "   proxy_pass http://u;\n  }\n  location /a/ {\n   location /a/b/ {\n"
    "    proxy_pass http://127.0.0.1:2/c/;\n   }\n  }\n }\n}\n",
    "http {\n log_format f '$remote_addr' \"$status\";\n access_log {tmp}/a.log f;\n"
    " server {\n  listen 127.0.0.1:1;\n  return 301 https://$host$request_uri;\n }\n}\n",
    "http {\n server {\n  location @a {\n  }\n  location @a {\n  }\n"
    "  location ~ /x {\n  }\n  location ~ /x {\n  }\n  location ^~ /a {\n   location /a {\n"
    "   }\n  }\n }\n}\n",
    "user www-data;\nworker_processes auto;\nhttp {\n sendfile on;\n gzip on;\n}\n",
]


@pytest.mark.parametrize("body", VALID)
def test_valid_for_both(tmp_path, body):
    header = f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
    conf = tmp_path / "main.conf"
    conf.write_text(header + body.replace("{tmp}", str(tmp_path)))
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None


def test_dump_equals_nginx_T(tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "b.conf").write_text("server {\n listen 127.0.0.1:2;\n}")
    (tmp_path / "sites" / "a.conf").write_text("server { listen 127.0.0.1:1; }\n\n")
    (tmp_path / "types.conf").write_text("types { text/html html; }\n")
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    "http {\n include types.conf;\n include sites/*.conf;\n}\n")
    proc = subprocess.run([NGINX, "-T", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert load_config(str(conf), str(tmp_path)).text == proc.stdout


# Directives that exist only here (unikernel pools), only in commercial nginx, or only in
# nginx newer than Debian's 1.22 ("http2 on", 1.25.1).
OURS_ONLY = {"unikernel", "image", "instances", "spares", "prestart", "memory", "transport", "accel", "balance",
             "setting", "unikernel_pass", "health_check", "least_time", "include",
             "proxy_request_timeout", "unikernel_auth", "unikernel_cache", "unikernel_body",
             "metrics", "status_json", "status_page", "http2"}
CONTEXT_WRAPPERS = {
    "main": "{line}",
    "events": "",
    "http": "http {{ {line} }}",
    "server": "http {{ server {{ {line} }} }}",
    "location": "http {{ server {{ location / {{ {line} }} }} }}",
    "upstream": "http {{ upstream u {{ server 127.0.0.1; {line} }} }}",
}


@pytest.mark.parametrize("name", sorted(set(directives.TABLE) - OURS_ONLY))
def test_directive_contexts_match_nginx(tmp_path, name):
    """Where nginx says "is not allowed here", our table says so too, and only there."""
    line = f"{name} x;"
    disagreements = []
    for context, wrapper in CONTEXT_WRAPPERS.items():
        events = f"events {{ {line} }}" if context == "events" else "events {}"
        conf = tmp_path / f"{context}.conf"
        conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n{events}\n"
                        + wrapper.format(line=line) + "\n")
        proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                              capture_output=True, text=True, timeout=30)
        assert "unknown directive" not in proc.stderr, proc.stderr
        nginx_allows = "is not allowed here" not in proc.stderr
        try:
            directives.lookup(name, context, str(conf), 1)
            we_allow = True
        except ConfigError:
            we_allow = False
        if nginx_allows != we_allow:
            disagreements.append((context, nginx_allows, we_allow))
    assert disagreements == []


@pytest.mark.parametrize("name", sorted(set(directives.TABLE) - OURS_ONLY))
def test_directive_argument_counts_match_nginx(tmp_path, name):
    """For 0 to 4 arguments, nginx and our table agree on "invalid number of arguments"."""
    disagreements = []
    for spec in directives.TABLE[name]:
        context = spec.contexts[0]
        for count in range(5):
            line = f"{name} {' '.join(['x'] * count)}" + (" { }" if spec.block else ";")
            if name == "events":
                body = line
            elif context == "events":
                body = f"events {{ {line} }}"
            else:
                body = "events {}\n" + CONTEXT_WRAPPERS[context].format(line=line)
            conf = tmp_path / "main.conf"
            conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n{body}\n")
            proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                                  capture_output=True, text=True, timeout=30)
            nginx_ok = f'invalid number of arguments in "{name}"' not in proc.stderr
            we_ok = spec.min_args <= count and (spec.max_args is None or count <= spec.max_args)
            if nginx_ok != we_ok:
                disagreements.append((context, count, nginx_ok, we_ok))
    assert disagreements == []


VALUE_CASES = [
    ("client_max_body_size", v) for v in
    ["1", "0", "1k", "1K", "1m", "1M", "1g", "1G", "1x", "-1", "1.5m", '""', "10kk"]
] + [
    ("proxy_read_timeout", v) for v in
    ["1", "0", "1s", "1ms", "500ms", "1m30s", '"1h 30m"', "1x", "1.5", "-1", '"1 s"', "1y",
     "1M", "1w", "1d", '"1s "', '" 1s"', "1s1s", "1m30", "1m1h", "1s1ms", "1ms5"]
] + [
    ("keepalive_requests", v) for v in ["0", "10", "-1", "1k", "x"]
]


@pytest.mark.parametrize("name,value", VALUE_CASES)
def test_values_accepted_like_nginx(tmp_path, name, value):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n {name} {value};\n}}\n")
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    try:
        load_config(str(conf), str(tmp_path))
    except ConfigError as exc:
        assert proc.returncode != 0
        assert str(exc) == nginx_message(tmp_path, str(conf))
    else:
        assert proc.returncode == 0, proc.stderr


# Each is either accepted by both or refused by both with the same message.
PARITY = r"""
http { upstream u { server 127.0.0.1 weight=1 max_fails=0 fail_timeout=0 max_conns=0; } }
http { upstream u { server 127.0.0.1 weight=-1; } }
http { upstream u { server 127.0.0.1 max_fails=-1; } }
http { upstream u { server 127.0.0.1 max_conns=x; } }
http { upstream u { server 127.0.0.1 fail_timeout=1h; } }
http { upstream u { server 127.0.0.1 down backup; } }
http { upstream u { server 127.0.0.1 backup; hash $uri; } }
http { upstream u { server 127.0.0.1 backup; hash $uri; server 127.0.0.2; } }
http { upstream u { server 127.0.0.1:0; } }
http { upstream u { server 127.0.0.1:65536; } }
http { upstream u { server [::1]; } }
http { upstream u { server localhost; } }
http { upstream u { server 127.0.0.1; keepalive_requests 0; } }
http { upstream u { server 127.0.0.1; keepalive_timeout 1y; } }
http { upstream u { server 127.0.0.1; hash $uri consistent; server 127.0.0.2 backup; } }
http { upstream u { server 127.0.0.1; random two least_conn; } }
http { upstream u { server 127.0.0.1; least_conn; least_conn; } }
http { server { listen 127.0.0.1:1 default_server default_server; } }
http { server { listen *:80; listen *:81; } }
http { server { listen 127.0.0.1; } }
http { server { listen localhost; } }
http { server { listen [::]:80 ipv6only=on; } }
http { server { listen 127.0.0.1:8080 backlog=-1; } }
http { server { listen 127.0.0.1:8080 backlog=0; } }
http { server { listen 127.0.0.1:8080 default; } }
http { server { listen 127.0.0.1:8080; listen 127.0.0.1:8080 default_server; } }
http { server { location / { return 200; } } }
http { server { location / { return 0; } } }
http { server { location / { return 999; } } }
http { server { location / { return -1; } } }
http { server { location / { return 302; } } }
http { server { location / { return 301 a b; } } }
http { server { location / { return /relative; } } }
http { server { location / { add_header X ""; } } }
http { server { location / { proxy_pass http://127.0.0.1:80; } location /b { proxy_pass http://127.0.0.1; } } }
http { server { location / { proxy_pass HTTP://127.0.0.1; } } }
http { server { location / { proxy_pass http://127.0.0.1?x; } } }
http { server { location / { proxy_pass http://u; } } }
http { server { location / { proxy_next_upstream off error; } } }
http { server { location / { proxy_next_upstream_tries -1; } } }
http { server { location / { index; } } }
http { server { location / { try_files a b; } } }
http { server { location / { alias a; alias b; } } }
http { server { location / { types { } types { } } } }
http { server { location / { default_type a b; } } }
http { server { server_tokens build; } }
http { server { server_tokens maybe; } }
http { server { etag maybe; } }
http { server { client_header_buffer_size 0; } }
http { server { large_client_header_buffers 0 8k; } }
http { server { large_client_header_buffers 4 0; } }
http { keepalive_timeout 75s 60s; }
http { keepalive_timeout 75s x; }
http { access_log off; access_log /tmp/x; }
http { access_log /tmp/x combined bogus; }
http { log_format x escape=json '$uri'; }
http { log_format x escape=bogus '$uri'; }
http { error_log stderr info; }
http { error_log stderr info debug; }
http { server { server_name ""; } }
http { server { server_name _ "" *.a.com .b.com ~^x$; } }
http { server { location = /a { } location ^~ /b/ { } location ~* \.png$ { } location @x { } } }
worker_processes 0;
worker_processes -1;
events { worker_connections 0; }
daemon off; master_process off;
""".strip().splitlines()


@pytest.mark.parametrize("body", PARITY)
def test_accepted_or_refused_like_nginx(tmp_path, body):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    + body + "\n")
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    try:
        load_config(str(conf), str(tmp_path))
    except ConfigError as exc:
        assert proc.returncode != 0, f"nginx accepts it, we say: {exc}"
        assert str(exc) == nginx_message(tmp_path, str(conf))
    else:
        assert proc.returncode == 0, proc.stderr
