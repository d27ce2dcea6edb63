"""nginx directives that only tune nginx's internals load with one warning each (issue 11)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from gateway.config import directives, load_config
from gateway.errors import ConfigError

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GATEWAY = [sys.executable, "-m", "gateway"]

# (context, directive line): every directive is written where nginx allows it, with
# arguments nginx accepts.  The ones marked "also" appear a second time elsewhere.
MAIN_LINES = [
    "worker_rlimit_core 10m;",
    "worker_priority -5;",
    "worker_cpu_affinity auto;",
    "timer_resolution 100ms;",
    "pcre_jit on;",
    "thread_pool default threads=4 max_queue=1024;",
    "working_directory /tmp;",
    "lock_file logs/nginx.lock;",
    "env TZ;",
]
EVENTS_LINES = [
    "use epoll;",
    "accept_mutex off;",
    "accept_mutex_delay 200ms;",
    "multi_accept on;",
    "worker_aio_requests 32;",
]
HTTP_LINES = [
    "variables_hash_max_size 1024;",
    "variables_hash_bucket_size 64;",
    "map_hash_max_size 2048;",
    "map_hash_bucket_size 64;",
    "server_names_hash_max_size 512;",
    "server_names_hash_bucket_size 64;",
    "types_hash_max_size 2048;",
    "types_hash_bucket_size 64;",
    "client_body_temp_path {tmp}/client_body 1 2;",
    "proxy_temp_path {tmp}/proxy 1 2;",
    "fastcgi_temp_path {tmp}/fastcgi;",
    "uwsgi_temp_path {tmp}/uwsgi;",
    "scgi_temp_path {tmp}/scgi;",
    "sendfile on;",
    "tcp_nopush on;",
    "tcp_nodelay on;",
    "reset_timedout_connection on;",
    "send_lowat 0;",
    "msie_refresh off;",
    "log_subrequest off;",
    "keepalive_disable msie6;",
    # Found loading the examples of nginx's own documentation (issue 11's sweep).
    "merge_slashes on;",
]
SERVER_LINES = [
    "connection_pool_size 512;",
    "request_pool_size 4k;",
    "lingering_close on;",
    "lingering_time 30s;",
    "lingering_timeout 5s;",
]
LOCATION_LINES = [
    "output_buffers 2 32k;",
    "postpone_output 1460;",
    "aio off;",
    "aio_write off;",
    "directio off;",
    "directio_alignment 512;",
    "read_ahead 0;",
    "open_file_cache max=1000 inactive=20s;",
    "open_file_cache_valid 30s;",
    "open_file_cache_min_uses 2;",
    "open_file_cache_errors on;",
    "open_file_cache_events off;",
    "proxy_buffers 8 4k;",
    "proxy_buffer_size 4k;",
    "proxy_busy_buffers_size 8k;",
    "proxy_max_temp_file_size 1024m;",
    "proxy_temp_file_write_size 8k;",
    "proxy_socket_keepalive off;",
    "proxy_limit_rate 10k;",
    "proxy_headers_hash_max_size 512;",
    "proxy_headers_hash_bucket_size 64;",
    "client_body_buffer_size 16k;",
    "client_body_in_file_only off;",
    "client_body_in_single_buffer off;",
    "subrequest_output_buffer_size 4k;",
    "sendfile_max_chunk 512k;",
    "chunked_transfer_encoding on;",
    "proxy_bind 127.0.0.1;",
    "proxy_ssl_conf_command Options -SessionTicket;",
    "proxy_ssl_session_reuse on;",
    "keepalive_time 1h;",
    "proxy_store on;",
    "proxy_store_access user:rw group:rw all:r;",
    "proxy_force_ranges on;",
]


def _config(tmp: str) -> str:
    def block(lines, indent):
        return "".join(f"{indent}{line.format(tmp=tmp)}\n" for line in lines)
    return (f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n" + block(MAIN_LINES, "")
            + "events {\n" + block(EVENTS_LINES, "    ") + "}\n"
            + "http {\n" + block(HTTP_LINES, "    ")
            + "    server {\n        listen 127.0.0.1:1;\n" + block(SERVER_LINES, "        ")
            + "        location / {\n" + block(LOCATION_LINES, "            ")
            + "            return 200;\n        }\n    }\n}\n")


ALL_LINES = MAIN_LINES + EVENTS_LINES + HTTP_LINES + SERVER_LINES + LOCATION_LINES


@pytest.mark.nginx
def test_internals_config_passes_nginx_t(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(_config(str(tmp_path)))
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_gateway_t_warns_once_per_directive(tmp_path):
    conf = tmp_path / "main.conf"
    text = _config(str(tmp_path))
    conf.write_text(text)
    env = dict(os.environ)
    proc = subprocess.run([*GATEWAY, "-t", "-p", str(tmp_path), "-c", str(conf)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warned = re.findall(r'\[warn\] "([a-z0-9_]+)" directive is accepted but not acted on in '
                        r"(\S+):(\d+)$", proc.stderr, re.M)
    names = [line.split()[0] for line in ALL_LINES]
    assert sorted(name for name, _, _ in warned) == sorted(names)
    lines = text.splitlines()
    for name, file, line in warned:
        assert file == str(conf)
        assert lines[int(line) - 1].strip().startswith(name + " ")


@pytest.mark.parametrize("line", ALL_LINES)
def test_every_internal_directive_is_marked_ignored(line):
    name = line.split()[0]
    assert all(spec.ignored for spec in directives.TABLE[name])


@pytest.mark.nginx
@pytest.mark.parametrize("body,expected", [
    ("events {}\nhttp { aio_write maybe; }\n",
     'invalid value "maybe" in "aio_write" directive, it must be "on" or "off"'),
    ("events {}\nhttp { output_buffers 2; }\n",
     'invalid number of arguments in "output_buffers" directive'),
    ("events {}\nhttp { server { location / { connection_pool_size 512; } } }\n",
     '"connection_pool_size" directive is not allowed here'),
    ("events {}\nthread_pool default;\n",
     'invalid number of arguments in "thread_pool" directive'),
    ("events { use; }\n", 'invalid number of arguments in "use" directive'),
    ("events {}\nhttp { map_hash_max_size 1 2; }\n",
     'invalid number of arguments in "map_hash_max_size" directive'),
])
def test_wrong_use_refused_in_nginx_wording(tmp_path, body, expected):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n" + body)
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    nginx_says = re.search(r"\[emerg\] \d+#\d+: (.*)$", proc.stderr, re.M).group(1)
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert str(info.value) == nginx_says
    assert nginx_says.startswith(expected)
