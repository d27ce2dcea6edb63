"""log_format, access_log, metrics, status_json: what loads, and what nginx refuses, in its words."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.config.observe import JSON
from gateway.errors import ConfigError
from tests.config.nginx_check import nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"

REFUSED = [
    ("escape", "http {\n log_format x escape=xml '$uri';\n}\n"),
    ("duplicate_format", "http {\n log_format x '$uri';\n log_format x '$uri';\n}\n"),
    ("redefined_combined", "http {\n log_format combined '$uri';\n}\n"),
    ("unknown_format", "http {\n access_log {tmp}/a.log nosuch;\n}\n"),
    ("format_omitted", "http {\n access_log {tmp}/a.log buffer=32k;\n}\n"),
    ("buffer_size", "http {\n access_log {tmp}/a.log combined buffer=lots;\n}\n"),
    ("buffer_zero", "http {\n access_log {tmp}/a.log combined buffer=0;\n}\n"),
    ("flush_time", "http {\n access_log {tmp}/a.log combined buffer=4k flush=soon;\n}\n"),
    ("flush_without_buffer", "http {\n access_log {tmp}/a.log combined flush=1s;\n}\n"),
    ("gzip_level", "http {\n access_log {tmp}/a.log combined gzip=10;\n}\n"),
    ("unknown_parameter", "http {\n access_log {tmp}/a.log combined sometimes;\n}\n"),
]


@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_like_nginx(tmp_path, name, body):
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + body.replace("{tmp}", str(tmp_path)))
    code, expected = nginx_refusal(tmp_path, conf)
    assert code != 0 and expected is not None
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert str(info.value) == expected


def load(tmp_path, http):
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + "http {\n" + http + "\n}\n")
    return load_config(str(conf), str(tmp_path))


def test_formats_escapes_and_buffers(tmp_path):
    config = load(tmp_path, f"""
        log_format plain escape=none '$uri';
        log_format quoted '"$http_user_agent"';
        access_log {tmp_path}/a.log plain buffer=32k flush=5s;
        server {{ listen 127.0.0.1:8099;
            location /j/ {{ access_log {tmp_path}/j.log json; }}
            location /g/ {{ access_log {tmp_path}/g.log quoted gzip; }}
        }}""")
    http = config.http
    assert (http.log_formats["plain"], http.log_escapes["plain"]) == ("$uri", "none")
    assert http.log_escapes["quoted"] == "default"
    (server,) = http.servers
    (log,) = server.settings.access_logs
    assert (log.format, log.escape, log.buffer, log.flush) == ("$uri", "none", 32 * 1024, 5.0)
    j, g = (loc.settings.access_logs[0] for loc in server.locations)
    assert (j.format, j.escape, j.buffer) == (JSON, "json", 0)
    assert (g.escape, g.buffer, g.flush) == ("default", 64 * 1024, 0.0)    # nginx: gzip buffers
    assert any('"gzip" is accepted but not acted on' in w for w in config.warnings)


def test_a_config_may_define_its_own_json_format(tmp_path):
    """Many nginx configs define `log_format json`: theirs replaces the ready-made one."""
    config = load(tmp_path, "log_format json escape=json '{\"u\":\"$uri\"}';")
    assert config.http.log_formats["json"] == '{"u":"$uri"}'


def test_metrics_and_status_json_are_content_handlers_not_inherited(tmp_path):
    config = load(tmp_path, """server { listen 127.0.0.1:8099; metrics;
        location = /s { status_json; }
        location / { }
    }""")
    (server,) = config.http.servers
    status, other = server.locations
    assert server.settings.metrics and not server.settings.status_json
    assert status.settings.status_json and not status.settings.metrics
    assert not other.settings.metrics and not other.settings.status_json


@pytest.mark.parametrize("line", ["metrics on;", "status_json x;"])
def test_metrics_and_status_json_take_no_arguments(tmp_path, line):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "server { listen 127.0.0.1:8099; location / { " + line + " } }")
    assert info.value.message == f'invalid number of arguments in "{line.split()[0]}" directive'
