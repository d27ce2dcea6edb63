"""The proxy cache's parts without servers: file names, what upstream fields say, the sweep
(inactive, max_size) and the directives' warnings."""

from __future__ import annotations

import os
import time

import pytest

from gateway.config import load_config
from gateway.config.proxy_cache import CachePath
from gateway.errors import ConfigError
from gateway.http import proxy_cache
from gateway.http.proxy_cache import CacheZone, freshness

NOW = 1_700_000_000


def _zone(tmp_path, **kw) -> CacheZone:
    return CacheZone(CachePath(str(tmp_path / "cache"), "z", **kw))


@pytest.mark.parametrize("levels, parts", [
    ((1, 2), ["c", "29"]), ((2,), ["9c"]), ((), []), ((1, 1, 2), ["c", "9", "02"]),
])
def test_file_names_follow_nginx_levels(tmp_path, levels, parts):
    zone = _zone(tmp_path, levels=levels)
    name = "b7f54b2df7773722d382f4809d65029c"
    assert zone.file_name(name) == os.path.join(zone.path, *parts, name)


def _fields(*pairs):
    return [(name.lower().encode(), name.encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize("pairs, ignore, expected", [
    ([], (), (True, 0, b"")),
    ([("Cache-Control", "max-age=60")], (), (True, NOW + 60, b"")),
    ([("Cache-Control", "public, s-maxage=5, max-age=60")], (), (True, NOW + 5, b"")),
    ([("Cache-Control", "max-age=6x")], (), (False, 0, b"")),
    ([("Cache-Control", "Private")], (), (False, 0, b"")),
    ([("Cache-Control", "no-store")], ("cache-control",), (True, 0, b"")),
    ([("X-Accel-Expires", "@1800000000")], (), (True, 1_800_000_000, b"")),
    ([("X-Accel-Expires", "10"), ("Cache-Control", "no-cache")], (), (True, NOW + 10, b"")),
    ([("Expires", "Thu, 01 Jan 2037 00:00:00 GMT")], (), (True, 2114380800, b"")),
    ([("Expires", "yesterday")], (), (False, 0, b"")),
    ([("Set-Cookie", "a=1")], (), (False, 0, b"")),
    ([("Set-Cookie", "a=1")], ("set-cookie",), (True, 0, b"")),
    ([("Vary", "Accept"), ("Vary", "Cookie")], (), (True, 0, b"Cookie")),
    ([("Vary", "*")], (), (False, 0, b"")),
    ([("Vary", "X" * 129)], (), (False, 0, b"")),
])
def test_what_the_upstream_fields_say(pairs, ignore, expected):
    assert freshness(_fields(*pairs), frozenset(ignore), NOW) == expected


def _entry(zone, name, size, age):
    path = zone.file_name(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_the_sweep_drops_inactive_entries_then_the_least_used_over_max_size(tmp_path):
    zone = _zone(tmp_path, levels=(1, 2), inactive=60, max_size=2500)
    old = _entry(zone, "a" * 32, 1000, 120)
    used = [_entry(zone, c * 32, 1000, age) for c, age in (("b", 30), ("c", 20), ("d", 10))]
    leftover = os.path.join(zone.temp, "123.1")
    open(leftover, "wb").close()
    os.utime(leftover, (time.time() - 7200,) * 2)
    zone.sweep_once()
    assert not os.path.exists(old) and not os.path.exists(leftover)
    assert [os.path.exists(p) for p in used] == [False, True, True]


def test_one_worker_sweeps_at_a_time(tmp_path, monkeypatch):
    first, second = _zone(tmp_path, inactive=60), _zone(tmp_path, inactive=60)
    swept = []
    monkeypatch.setattr(CacheZone, "_sweep", lambda self, wall: swept.append(self))
    first.sweep_once()
    second.sweep_once()         # the other worker swept a moment ago
    assert swept == [first]
    started = []
    monkeypatch.setattr(proxy_cache.threading, "Thread",
                        lambda target, **kw: type("T", (), {"start": lambda _: started.append(1)})())
    first.tick(100.0)
    first.tick(101.0)           # not due yet
    assert started == [1]


def _conf(tmp_path, body, zone="z"):
    conf = tmp_path / "main.conf"
    conf.write_text(f"events {{}}\nhttp {{\n proxy_cache_path {tmp_path}/c keys_zone=z:1m;\n"
                    f" server {{\n  listen 127.0.0.1:1;\n  location / {{\n"
                    f"   proxy_pass http://127.0.0.1:2;\n   proxy_cache {zone};\n   {body}\n"
                    f"  }}\n }}\n}}\n")
    return str(conf)


def test_lock_is_accepted_with_a_warning_revalidate_is_done(tmp_path):
    path = _conf(tmp_path, "proxy_cache_lock on;\n proxy_cache_revalidate on;\n"
                           " proxy_cache_background_update off;")
    warnings = load_config(path, str(tmp_path)).warnings
    assert warnings == [f'"proxy_cache_lock" directive is accepted but not acted on in {path}:9']


def test_a_cached_location_leaves_the_compiled_path(tmp_path):
    from gateway.http.plan import LocationPlan
    cfg = load_config(_conf(tmp_path, "proxy_cache_valid 1m;"), str(tmp_path))
    location = cfg.http.servers[0].locations[0]
    settings = location.settings
    assert settings.proxy_cache.name == "z" and settings.proxy_cache_valid == [
        (200, 60.0), (301, 60.0), (302, 60.0)]

    class Upstream:
        class config:
            keepalive = 0

        class balancer:
            key_template = None

    plan = LocationPlan(location, settings, {settings.proxy_pass.upstream: Upstream}, [])
    assert plan.proxy.python_only and plan.proxy.cache.valid_for(301) == 60
    assert plan.proxy.cache.valid_for(404) == 0
    proxy_cache._zones.clear()


def test_proxy_cache_with_variables_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_conf(tmp_path, "", zone="$host"), str(tmp_path))
    assert "not supported by this gateway" in str(info.value)


def test_an_entry_with_a_long_key_reads_whole(tmp_path):
    from gateway.http.proxy_cache import Entry, entry_header
    key = b"k" * (proxy_cache.HEAD_READ + 10)
    head = b"HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\n"
    path = tmp_path / "entry"
    path.write_bytes(entry_header(key, NOW + 5, NOW, b"", "-", head) + b"ok")
    entry = Entry(str(path), key)
    assert (entry.valid_sec, entry.date, entry.head, entry.file.read()) == (
        NOW + 5, NOW, head, b"ok")
    entry.close()
    with pytest.raises(ValueError):
        Entry(str(path), b"another key")
