"""proxy_cache_path and the proxy_cache* directives (ngx_http_file_cache.c and the proxy
module's cache settings), read in nginx's wording.

``proxy_cache_path`` declares a zone at the http level; a location's ``proxy_cache`` names
one, resolved once the http block is read (so a zone may be declared after its first use, as
in nginx). Each other directive is a LocationSettings field merged on its own, as nginx merges
them one by one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({
    "proxy_cache", "proxy_cache_key", "proxy_cache_valid", "proxy_cache_methods",
    "proxy_cache_bypass", "proxy_no_cache", "proxy_cache_min_uses", "proxy_cache_use_stale",
    "proxy_cache_lock", "proxy_cache_lock_timeout", "proxy_cache_lock_age",
    "proxy_cache_revalidate", "proxy_cache_convert_head", "proxy_cache_background_update",
    "proxy_cache_max_range_offset"})
# Accepted, with a warning when turned on: the gateway does not do these (README).
NOT_DONE = ("proxy_cache_lock", "proxy_cache_background_update")
# nginx's ngx_http_proxy_next_upstream_masks, as proxy_cache_use_stale reads them.
USE_STALE = frozenset({"error", "timeout", "invalid_header", "updating", "http_500", "http_502",
                       "http_503", "http_504", "http_403", "http_404", "http_429", "off"})
# proxy_cache_methods: ngx_http_upstream_cache_method_mask.
METHODS = {"GET": "GET", "HEAD": "HEAD", "POST": "POST"}
# "proxy_cache_valid TIME" without codes (ngx_http_file_cache_valid_set_slot).
DEFAULT_CODES = (200, 301, 302)
# nginx's keys zones may not be smaller than two pages.
MIN_KEYS_ZONE = 2 * 4096
PATH_PARAMS = ("levels=", "use_temp_path=", "keys_zone=", "inactive=", "max_size=", "min_free=",
               "loader_files=", "loader_sleep=", "loader_threshold=", "manager_files=",
               "manager_sleep=", "manager_threshold=")


@dataclass
class CachePath:
    """One proxy_cache_path: where entries live and how long and how many are kept."""

    path: str                     # absolute
    name: str                     # the keys zone's name
    levels: tuple[int, ...] = ()  # e.g. (1, 2): "c/29/b7f5...29c"
    inactive: float = 600.0       # an entry unused this long is removed
    max_size: int = 0             # bytes; 0: no limit
    file: str | None = None
    line: int | None = None


def path_directive(d: Directive, base_path) -> CachePath:
    """ngx_http_file_cache_set_slot: ``PATH [levels=] keys_zone=NAME:SIZE [inactive=] ...``."""
    a, f, ln = d.args, d.file, d.line
    if len(a) < 2:
        raise ConfigError('invalid number of arguments in "proxy_cache_path" directive', f, ln)
    cache = CachePath(base_path(a[0]), "", file=f, line=ln)
    size = 0
    for word in a[1:]:
        if word.startswith("levels="):
            cache.levels = _levels(word, f, ln)
        elif word.startswith("use_temp_path="):
            if word[14:] not in ("on", "off"):
                raise ConfigError(f'invalid use_temp_path value "{word}", it must be "on" or '
                                  '"off"', f, ln)
        elif word.startswith("keys_zone="):
            name, colon, text = word[10:].partition(":")
            parsed = values.parse_size(text) if colon else None
            if parsed is None:
                raise ConfigError(f'invalid keys zone size "{word}"', f, ln)
            if parsed < MIN_KEYS_ZONE:
                raise ConfigError(f'keys zone "{word}" is too small', f, ln)
            cache.name, size = name, parsed
        elif word.startswith("inactive="):
            seconds = values.parse_time(word[9:])
            if seconds is None:
                raise ConfigError(f'invalid inactive value "{word}"', f, ln)
            cache.inactive = seconds
        elif word.startswith(("max_size=", "min_free=")):
            parsed = values.parse_size(word[9:])
            if parsed is None:
                raise ConfigError(f'invalid {word[:8]} value "{word}"', f, ln)
            if word.startswith("max_size="):
                cache.max_size = parsed
        elif word.startswith(("loader_files=", "manager_files=")):
            if not word.partition("=")[2].isdigit():
                raise ConfigError(f'invalid {word.partition("=")[0]} value "{word}"', f, ln)
        elif word.startswith(("loader_sleep=", "loader_threshold=", "manager_sleep=",
                              "manager_threshold=")):
            if values.parse_time(word.partition("=")[2], long_units=False) is None:
                raise ConfigError(f'invalid {word.partition("=")[0]} value "{word}"', f, ln)
        else:
            raise ConfigError(f'invalid parameter "{word}"', f, ln)
    if not cache.name or not size:
        raise ConfigError('"proxy_cache_path" must have "keys_zone" parameter', f, ln)
    return cache


def _levels(word: str, f: str, ln: int) -> tuple[int, ...]:
    """``levels=1:2``: up to three levels of one or two characters each."""
    parts = word[7:].split(":")
    if len(parts) > 3 or not all(p in ("1", "2") for p in parts):
        raise ConfigError(f'invalid "levels" "{word}"', f, ln)
    return tuple(int(p) for p in parts)


def paths(block: list[Directive], base_path) -> dict[str, CachePath]:
    """The zones an http block declares: name -> CachePath."""
    found: dict[str, CachePath] = {}
    for d in block:
        if d.name != "proxy_cache_path":
            continue
        cache = path_directive(d, base_path)
        if cache.name in found:
            raise ConfigError(f'duplicate zone "{cache.name}"', d.file, d.line)
        found[cache.name] = cache
    return found


def read(d: Directive, own: dict, lists: dict, warnings: list, compile_template) -> None:
    """Put one proxy_cache* directive's value in ``own`` (LocationSettings fields)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n == "proxy_cache":
        if "$" in a[0]:
            raise ConfigError('"proxy_cache" with variables is not supported by this gateway',
                              f, ln)
        own[n] = None if a[0] == "off" else (a[0], f, ln)
    elif n == "proxy_cache_key":
        compile_template(a[0], f, ln)
        own[n] = a[0]
    elif n == "proxy_cache_valid":
        seconds = values.parse_time(a[-1])
        if seconds is None:
            raise ConfigError(f'invalid time value "{a[-1]}"', f, ln)
        rules = lists.setdefault("proxy_cache_valid", [])
        if len(a) == 1:
            rules.extend((code, seconds) for code in DEFAULT_CODES)
        for word in a[:-1]:
            if word == "any":
                rules.append((0, seconds))
                continue
            if not word.isdigit() or not 100 <= int(word) <= 599:
                raise ConfigError(f'invalid status "{word}"', f, ln)
            rules.append((int(word), seconds))
    elif n in ("proxy_cache_methods", "proxy_cache_use_stale"):
        allowed = METHODS if n == "proxy_cache_methods" else USE_STALE
        seen = set(own.get(n, ()))
        for word in a:
            if word not in allowed:
                raise ConfigError(f'invalid value "{word}"', f, ln)
            if word in seen:
                warnings.append(f'duplicate value "{word}" in {f}:{ln}')
            seen.add(word)
        own[n] = frozenset(seen)
    elif n in ("proxy_cache_bypass", "proxy_no_cache"):
        for word in a:
            compile_template(word, f, ln)
        lists.setdefault(n, []).extend(a)
    elif n == "proxy_cache_min_uses":
        own[n] = values.number(n, a[0], f, ln)
    elif n in ("proxy_cache_lock_timeout", "proxy_cache_lock_age"):
        values.time(n, a[0], f, ln)
    elif n == "proxy_cache_max_range_offset":
        values.size(n, a[0], f, ln)
    elif n in NOT_DONE or n in ("proxy_cache_convert_head", "proxy_cache_revalidate"):
        if a[0] not in ("on", "off"):
            raise ConfigError(f'invalid value "{a[0]}" in "{n}" directive, it must be "on" or '
                              '"off"', f, ln)
        if n in NOT_DONE and a[0] == "on":
            warnings.append(f'"{n}" directive is accepted but not acted on in {f}:{ln}')
        if n not in NOT_DONE:
            own[n] = a[0] == "on"


def resolve(locations, zones: dict[str, CachePath]) -> None:
    """Give each level's proxy_cache its zone (nginx: ``"proxy_cache" zone "X" is unknown``)."""
    for settings in locations:
        named = settings.proxy_cache
        if named is None or isinstance(named, CachePath):
            continue
        name, f, ln = named
        if name not in zones:
            raise ConfigError(f'"proxy_cache" zone "{name}" is unknown', f, ln)
        settings.proxy_cache = zones[name]


def base_path(prefix: str):
    """How proxy_cache_path names relative paths: under the prefix (ngx_conf_full_name)."""
    return lambda path: path if os.path.isabs(path) else os.path.normpath(
        os.path.join(prefix, path))
