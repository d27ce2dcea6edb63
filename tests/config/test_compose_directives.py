"""unikernel_auth, unikernel_cache and unikernel_body: what loads, what is inherited, what is refused."""

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

POOLS = """
    unikernel auth { image auth; }
    unikernel kv { image kv; instances 2 2; balance hash $request_uri consistent; }
    unikernel one { image kv; }
    unikernel hooks { image webhook; }
    unikernel echo { image echo; }
"""


def load(tmp_path, server, http=""):
    conf = tmp_path / "c.conf"
    conf.write_text("events {}\nhttp {\n" + POOLS + http + "\n  server {\n    listen 127.0.0.1:8099;\n"
                    + server + "\n  }\n}\n")
    return load_config(str(conf), str(tmp_path))


def location(config, pattern):
    (server,) = config.http.servers
    return next(loc for loc in server.locations if loc.pattern == pattern)


def refused(tmp_path, server, http=""):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, server, http)
    return str(caught.value)


def test_parts_load_with_their_options(tmp_path):
    config = load(tmp_path, """
        location /api/ {
            unikernel_auth auth token=$cookie_session fail=open timeout=300ms set_header X-User=sub X-Org=org;
            unikernel_cache kv key=$host$uri ttl=5m methods=GET max_size=64k fail=closed timeout=1s;
            unikernel_body hooks signature=$http_x_sig timeout=2s;
            proxy_pass http://127.0.0.1:9;
        }""")
    settings = location(config, "/api/").settings
    auth, cache, body = settings.unikernel_auth, settings.unikernel_cache, settings.unikernel_body
    assert (auth.pool, auth.token, auth.fail, auth.timeout) == ("auth", "$cookie_session", "open", 0.3)
    assert auth.claim_headers == [("X-User", "sub"), ("X-Org", "org")]
    assert (cache.key, cache.ttl, cache.methods, cache.max_size, cache.fail, cache.timeout) == \
        ("$host$uri", 300, frozenset({"GET"}), 65536, "closed", 1.0)
    assert (body.pool, body.signature, body.timeout) == ("hooks", "$http_x_sig", 2.0)


def test_parts_are_inherited_and_switched_off(tmp_path):
    config = load(tmp_path, """
        unikernel_auth auth;
        location /a/ { proxy_pass http://127.0.0.1:9; }
        location /open/ { unikernel_auth off; proxy_pass http://127.0.0.1:9; }""",
        http="unikernel_cache one;")
    assert location(config, "/a/").settings.unikernel_auth.pool == "auth"
    assert location(config, "/a/").settings.unikernel_cache.pool == "one"
    assert location(config, "/open/").settings.unikernel_auth is None


@pytest.mark.parametrize("directive, message", [
    ("unikernel_auth nope;", 'host not found in unikernel "nope"'),
    ("unikernel_auth echo;", '"unikernel_auth" needs a unikernel running "auth", but "echo" runs "echo"'),
    ("unikernel_cache auth;", '"unikernel_cache" needs a unikernel running "kv", but "auth" runs "auth"'),
    ("unikernel_body kv;", '"unikernel_body" needs a unikernel running "webhook", but "kv" runs "kv"'),
    ("unikernel_auth auth fail=maybe;", 'invalid value "fail=maybe" in "unikernel_auth" directive'),
    ("unikernel_auth auth colour=red;", 'invalid parameter "colour=red"'),
    ("unikernel_auth auth set_header;", 'invalid number of arguments in "unikernel_auth" directive'),
    ("unikernel_auth auth set_header X-User;", 'invalid parameter "X-User"'),
    ("unikernel_auth auth set_header X\\nY=sub;", 'invalid parameter "X\nY=sub"'),
    ("unikernel_auth auth token=$nosuch;", 'unknown "nosuch" variable'),
    ("unikernel_auth auth timeout=soon;", 'invalid value "timeout=soon" in "unikernel_auth" directive'),
    ("unikernel_auth off extra;", 'invalid number of arguments in "unikernel_auth" directive'),
    ("unikernel_cache kv methods=POST;", 'invalid value "methods=POST" in "unikernel_cache" directive'),
    ("unikernel_cache kv ttl=0;", 'invalid value "ttl=0" in "unikernel_cache" directive'),
    ("unikernel_cache kv max_size=2m;", 'invalid value "max_size=2m" in "unikernel_cache" directive'),
    ("unikernel_cache kv fail=open;", 'invalid value "fail=open" in "unikernel_cache" directive'),
    ("unikernel_body hooks signature=$http_x key=1;", 'invalid parameter "key=1"'),
    ("unikernel_auth auth; unikernel_auth auth;", '"unikernel_auth" directive is duplicate'),
])
def test_bad_parts_are_refused_with_the_place(tmp_path, directive, message):
    text = refused(tmp_path, f"location /x/ {{ {directive} proxy_pass http://127.0.0.1:9; }}")
    assert text.startswith(message) and text.endswith(f"{tmp_path}/c.conf:12")


def test_a_cache_over_several_instances_needs_a_hash(tmp_path):
    text = refused(tmp_path, "location /x/ { unikernel_cache spread; proxy_pass http://127.0.0.1:9; }",
                   http="unikernel spread { image kv; instances 2 2; }")
    assert text == ('"unikernel_cache" needs "balance hash $request_uri consistent;" in unikernel "spread" '
                    f'in {tmp_path}/c.conf:12')
