"""The gzip and gzip_static directives (ngx_http_gzip_filter_module, ngx_http_gzip_static_module
and the gzip_* settings of ngx_http_core_module), read in nginx's wording."""

from __future__ import annotations

from gateway.config import maps, values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

# gzip_proxied's words (nginx's ngx_http_gzip_proxied_mask).
PROXIED = ("off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag",
           "auth", "any")
STATIC = ("off", "on", "always")
# gzip_window: window size -> zlib's windowBits; gzip_hash: hash size -> zlib's memLevel.
_WINDOWS = {512 << n: 9 + n for n in range(7)}
_HASHES = {512 << n: 1 + n for n in range(9)}
# Read here, nothing else to do for them: they tune how nginx allocates its buffers.
INTERNALS = frozenset({"gzip_buffers", "gzip_no_buffer", "postpone_gzipping"})


def read(d: Directive, own: dict, warnings: list[str]) -> None:
    """Put one gzip directive's value in ``own`` (LocationSettings fields set at this level)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n in ("gzip", "gzip_vary"):
        own[n] = values.flag(a[0])
    elif n == "gzip_static":
        if a[0] not in STATIC:
            raise ConfigError(f'invalid value "{a[0]}"', f, ln)
        own[n] = a[0]
    elif n == "gzip_comp_level":
        level = values.number(n, a[0], f, ln)
        if not 1 <= level <= 9:
            raise ConfigError("value must be between 1 and 9", f, ln)
        own[n] = level
    elif n == "gzip_min_length":
        own[n] = values.size(n, a[0], f, ln)
    elif n == "gzip_window":
        own[n] = _power(n, a[0], _WINDOWS, "512, 1k, 2k, 4k, 8k, 16k, or 32k", f, ln)
    elif n == "gzip_hash":
        own[n] = _power(n, a[0], _HASHES, "512, 1k, 2k, 4k, 8k, 16k, 32k, 64k, or 128k", f, ln)
    elif n == "gzip_http_version":
        if a[0] not in ("1.0", "1.1"):
            raise ConfigError(f'invalid value "{a[0]}"', f, ln)
        own[n] = 10 if a[0] == "1.0" else 11
    elif n == "gzip_proxied":
        # Several gzip_proxied lines at one level add up (nginx's bitmask slot).
        seen = set(own.get(n, ()))
        for word in a:
            if word not in PROXIED:
                raise ConfigError(f'invalid value "{word}"', f, ln)
            if word in seen:
                warnings.append(f'duplicate value "{word}" in {f}:{ln}')
            seen.add(word)
        own[n] = frozenset(seen)
    elif n == "gzip_types":
        values.mime_types(d, own, "gzip_types", warnings)
    elif n == "gzip_disable":
        patterns = list(own.get(n, ()))
        for word in a:
            if word == "msie6":
                own["gzip_disable_msie6"] = True
            else:
                patterns.append(maps.regex(word, True, f, ln))
        own[n] = tuple(patterns)
    elif n == "gzip_buffers":
        number, size = a
        if not number.isdigit() or int(number) == 0 or not values.parse_size(size):
            raise ConfigError(f'"{n}" directive invalid value', f, ln)
        _internal(d, warnings)
    elif n in INTERNALS:
        if n == "postpone_gzipping":
            values.size(n, a[0], f, ln)
        _internal(d, warnings)



def _power(name: str, text: str, table: dict, allowed: str, file: str, line: int) -> int:
    size = values.size(name, text, file, line)
    if size not in table:
        raise ConfigError(f'"{name}" directive must be {allowed}', file, line)
    return table[size]


def _internal(d: Directive, warnings: list[str]) -> None:
    warnings.append(f'"{d.name}" directive is accepted but not acted on in {d.file}:{d.line}')
