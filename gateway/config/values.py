"""nginx's value syntaxes: sizes, times, numbers and flags."""

from __future__ import annotations

import re

from gateway.errors import ConfigError

_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
# Longest unit names first so that "ms" is not read as "m" followed by "s".
_TIME_PART = re.compile(r"(\d+)(ms|y|M|w|d|h|m|s)?")
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
               "M": 2592000, "y": 31536000, None: 1}


def parse_size(text: str) -> int | None:
    """``"512k"`` -> 524288; None when invalid."""
    m = _SIZE.match(text)
    if not m:
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_time(text: str) -> float | None:
    """``"1m 30s"``, ``"500ms"``, ``"30"`` -> seconds; None when invalid."""
    text = text.strip()
    if not text:
        return None
    total, pos = 0.0, 0
    while pos < len(text):
        while pos < len(text) and text[pos] == " ":
            pos += 1
        m = _TIME_PART.match(text, pos)
        if not m or m.end() == pos:
            return None
        total += int(m.group(1)) * _TIME_UNITS[m.group(2)]
        pos = m.end()
    return total


def size(name: str, value: str, file: str, line: int) -> int:
    """A size argument, or nginx's "invalid value" error."""
    result = parse_size(value)
    if result is None:
        raise ConfigError(f'"{name}" directive invalid value', file, line)
    return result


def time(name: str, value: str, file: str, line: int) -> float:
    """A time argument in seconds, or nginx's "invalid value" error."""
    result = parse_time(value)
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
