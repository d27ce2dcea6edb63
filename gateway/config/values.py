"""nginx's value syntaxes: sizes, times, numbers and flags."""

from __future__ import annotations

import re

from gateway.errors import ConfigError

_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
# Units from largest to smallest: nginx wants them in this order, each at most once.
_TIME_UNITS = [("y", 31536000), ("M", 2592000), ("w", 604800), ("d", 86400), ("h", 3600),
               ("m", 60), ("s", 1), ("ms", 0.001)]
# "ms" before "m" and "s" so that "500ms" is not read as minutes.
_TIME_PART = re.compile(r"(\d+)(ms|y|M|w|d|h|m|s)? *")


def parse_size(text: str) -> int | None:
    """``"512k"`` -> 524288; None when invalid."""
    m = _SIZE.match(text)
    if not m:
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_time(text: str, long_units: bool = True) -> float | None:
    """``"1m 30s"``, ``"500ms"``, ``"30"`` -> seconds; None when invalid.

    ``long_units=False`` refuses "y" and "M", as nginx does for millisecond settings.
    """
    order = [name for name, _ in _TIME_UNITS]
    factor = dict(_TIME_UNITS)
    total, pos, last = 0.0, 0, -1
    while pos < len(text):
        m = _TIME_PART.match(text, pos)
        if not m:
            return None
        unit = m.group(2)
        if unit is None:
            # A bare number counts as seconds, and only at the end ("1m30").
            if m.end() != len(text):
                return None
            return total + int(m.group(1))
        rank = order.index(unit)
        if rank <= last or (not long_units and unit in ("y", "M")):
            return None
        total += int(m.group(1)) * factor[unit]
        last, pos = rank, m.end()
    return total if pos else None


def size(name: str, value: str, file: str, line: int) -> int:
    """A size argument, or nginx's "invalid value" error."""
    result = parse_size(value)
    if result is None:
        raise ConfigError(f'"{name}" directive invalid value', file, line)
    return result


def time(name: str, value: str, file: str, line: int) -> float:
    """A time argument in seconds, or nginx's "invalid value" error."""
    result = parse_time(value, long_units=False)
    if result is None:
        raise ConfigError(f'"{name}" directive invalid value', file, line)
    return result


def number(name: str, value: str, file: str, line: int) -> int:
    """A non-negative integer argument, or nginx's "invalid number" error."""
    if not value.isdigit():
        raise ConfigError(f'"{name}" directive invalid number', file, line)
    return int(value)


def flag(value: str) -> bool:
    """``on`` -> True (the directive table has already checked on/off)."""
    return value == "on"


def check_template(text: str, file: str, line: int) -> None:
    """Compile a template with variables now, so that a typo fails at load."""
    from gateway.http.variables import compile_template   # the runtime's own compiler
    compile_template(text, file, line)


def mime_types(d, own: dict, key: str, warnings: list[str]) -> None:
    """nginx's ngx_http_types_slot (gzip_types, sub_filter_types...): text/html always, more
    added line by line, "*" for every type (None)."""
    if key in own and own[key] is None:
        return
    types = list(own.get(key, ("text/html",)))
    for word in d.args:
        if word == "*":
            own[key] = None
            return
        lower = word.lower()
        if lower in types:
            warnings.append(f'duplicate MIME type "{lower}" in {d.file}:{d.line}')
            continue
        types.append(lower)
    own[key] = tuple(types)
