"""limit_req, limit_conn, allow/deny, auth_basic and satisfy: loading, inheritance, and refusals
in nginx's words (asked of nginx -t itself)."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.config.limits import NODELAY
from gateway.errors import ConfigError
from tests.config.nginx_check import assert_refused_like_nginx, nginx_refusal

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
ZONE = "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;\n"
CONN = "limit_conn_zone $binary_remote_addr zone=c:1m;\n"


def http(body):
    return "http {\n" + body + "\n}\n"


def location(body, zones=ZONE + CONN):
    return http(zones + " server {\n  listen 127.0.0.1:1;\n  location / {\n   " + body + "\n  }\n }")


REFUSED = [
    ("zone_small", http("limit_req_zone $binary_remote_addr zone=one:1k rate=1r/s;")),
    ("zone_no_size", http("limit_req_zone $binary_remote_addr zone=one rate=1r/s;")),
    ("zone_bad_size", http("limit_req_zone $binary_remote_addr zone=one:1q rate=1r/s;")),
    ("zone_missing", http("limit_req_zone $binary_remote_addr rate=1r/s foo=1;")),
    ("zone_param", http("limit_conn_zone $binary_remote_addr size=1m;")),
    ("zone_args", http("limit_req_zone $binary_remote_addr zone=one:1m;")),
    ("rate_zero", http("limit_req_zone $binary_remote_addr zone=one:1m rate=0r/s;")),
    ("rate_hour", http("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/h;")),
    ("rate_text", http("limit_req_zone $binary_remote_addr zone=one:1m rate=fast;")),
    ("zone_twice", http(ZONE + "limit_req_zone $remote_addr zone=one:1m rate=2r/s;")),
    ("zone_other_use", http(ZONE + "limit_conn_zone $remote_addr zone=one:1m;")),
    ("zone_context", "http {\n server {\n  " + ZONE + " }\n}\n"),
    ("burst", location("limit_req zone=one burst=x;")),
    ("burst_zero", location("limit_req zone=one burst=0;")),
    ("delay", location("limit_req zone=one delay=-1;")),
    ("req_param", location("limit_req zone=one fast;")),
    ("req_no_zone", location("limit_req burst=5;")),
    ("req_twice", location("limit_req zone=one; limit_req zone=one burst=2;")),
    ("req_status", location("limit_req zone=one; limit_req_status 399;")),
    ("req_status_text", location("limit_req_status abc;")),
    ("req_level", location("limit_req_log_level debug;")),
    ("req_dry", location("limit_req_dry_run maybe;")),
    ("conn_zero", location("limit_conn c 0;")),
    ("conn_text", location("limit_conn c x;")),
    ("conn_big", location("limit_conn c 65536;")),
    ("conn_twice", location("limit_conn c 1; limit_conn c 2;")),
    ("conn_args", location("limit_conn c;")),
    ("conn_status", location("limit_conn_status 600;")),
    ("allow_cidr", location("allow 10.0.0.0/33;")),
    ("deny_text", location("deny everyone;")),
    ("allow_args", location("allow;")),
    ("satisfy", location("satisfy some;")),
    ("auth_args", location("auth_basic;")),
    ("auth_file_args", location("auth_basic_user_file a b;")),
]


@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_like_nginx(tmp_path, name, body):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + body)
    assert_refused_like_nginx(tmp_path, path, load_config)


@pytest.mark.nginx
def test_an_unknown_zone_is_refused_with_the_place(tmp_path):
    """nginx says "zero size shared memory zone" without a place; ours names the limit_req."""
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + location("limit_req zone=two;"))
    code, expected = nginx_refusal(tmp_path, path)
    assert code != 0 and expected == 'zero size shared memory zone "two"'
    with pytest.raises(ConfigError) as info:
        load_config(str(path), str(tmp_path))
    assert str(info.value) == f'{expected} in {path}:10'


def test_settings_load_and_inherit(tmp_path):
    path = tmp_path / "main.conf"
    path.write_text(HEADER.format(tmp=tmp_path) + http(
        "limit_req zone=late burst=3 nodelay; limit_req_status 429; limit_conn c 4;\n"
        "deny 192.0.2.0/24; allow all; auth_basic \"x\"; auth_basic_user_file users;\n"
        + CONN + " server {\n  listen 127.0.0.1:1;\n  location / { }\n"
        "  location /own/ { limit_req zone=late delay=2; allow 10.0.0.1/8; satisfy any; auth_basic off; }\n }\n"
        "limit_req_zone $binary_remote_addr zone=late:1m rate=30r/m;"))
    config = load_config(str(path), str(tmp_path))
    inherited, own = config.http.servers[0].locations
    (limit,) = inherited.settings.limit_reqs
    assert (limit.zone.name, limit.zone.rate, limit.burst, limit.delay) == ("late", 500, 3000, NODELAY * 1000)
    assert inherited.settings.limit_req_status == 429 and inherited.settings.limit_conns[0].conn == 4
    assert [(str(net), deny) for net, deny in inherited.settings.access_rules] == \
        [("192.0.2.0/24", True), ("None", False)]
    assert inherited.settings.auth_basic_user_file == str(tmp_path / "users")
    (own_limit,) = own.settings.limit_reqs
    assert (own_limit.burst, own_limit.delay, own.settings.satisfy) == (0, 2000, "any")
    assert [str(net) for net, _ in own.settings.access_rules] == ["10.0.0.0/8"]
    assert own.settings.auth_basic is None
    assert any("low address bits of 10.0.0.1/8 are meaningless" in w for w in config.warnings)
