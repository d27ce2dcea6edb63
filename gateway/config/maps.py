"""``map`` and ``split_clients`` blocks: read into MapBlock and SplitClients, in nginx's wording."""

from __future__ import annotations

import re

from gateway.config import geo, hostname_keys
from gateway.config.model import MapBlock, SplitClients
from gateway.config.parser import Directive
from gateway.config.pcre import PcreError, compile_regex, named_groups, refusal
from gateway.errors import ConfigError

# nginx's split_clients scale: percentages in hundredths, bounds over 32-bit hashes.
_HUNDRED_PERCENT = 10000
_HASH_SPACE = 0xFFFFFFFF


def variable_name(d: Directive) -> str:
    """The ``$name`` argument of map or split_clients, without "$"."""
    name = d.args[1]
    if len(name) < 2 or name[0] != "$":
        raise ConfigError(f'invalid variable name "{name}"', d.file, d.line)
    return name[1:]


def named_captures(pattern: str) -> list[str]:
    """Names of the ``(?<name>...)`` groups of a regex: variables it sets when it matches."""
    return named_groups(pattern)


def regex(pattern: str, caseless: bool, file: str, line: int) -> re.Pattern:
    """A regex from the config; a bad one is refused as nginx refuses it (PCRE2's words differ)."""
    try:
        return compile_regex(pattern, caseless)
    except PcreError as exc:
        raise ConfigError(refusal(exc, pattern), file, line) from None


def map_block(d: Directive, check_template) -> MapBlock:
    """Read one ``map`` block; ``check_template(text, file, line)`` validates variables."""
    check_template(d.args[0], d.file, d.line)
    block = MapBlock(d.args[0], variable_name(d), file=d.file, line=d.line)
    default_seen = False
    for e in d.block:
        words = [e.name, *e.args]
        if len(words) == 1 and words[0] == "hostnames":
            block.hostnames = True
            continue
        if len(words) == 1 and words[0] == "volatile":
            block.volatile = True
            continue
        if len(words) != 2:
            raise ConfigError("invalid number of the map parameters", e.file, e.line)
        key, value = words
        check_template(value, e.file, e.line)
        if key == "default":
            if default_seen:
                raise ConfigError("duplicate default map parameter", e.file, e.line)
            default_seen = True
            block.default = value
            continue
        if key.startswith("~"):
            caseless = key.startswith("~*")
            pattern = key[2:] if caseless else key[1:]
            block.regexes.append((regex(pattern, caseless, e.file, e.line), value))
            continue
        if key.startswith("\\"):
            key = key[1:]
        _add_key(block, key, value, e)
    return block


def _add_key(block: MapBlock, key: str, value: str, e: Directive) -> None:
    """nginx's ngx_hash_add_key: exact keys, and with ``hostnames`` the wildcard forms."""
    if block.hostnames:
        hostname_keys.add_key(block.exact, block.wildcard_head, block.wildcard_tail, key, value,
                              e.file, e.line)
        return
    lower = key.lower()
    if lower in block.exact:
        # nginx lowercases the key in place before it reports a conflict.
        raise ConfigError(f'conflicting parameter "{lower}"', e.file, e.line)
    block.exact[lower] = value


def split_clients_block(d: Directive, check_template) -> SplitClients:
    """Read one ``split_clients`` block, with nginx's bounds for each part."""
    check_template(d.args[0], d.file, d.line)
    block = SplitClients(d.args[0], variable_name(d))
    percents: list[tuple[int, str]] = []
    for e in d.block:
        words = [e.name, *e.args]
        percent = 0 if words[0] == "*" else _percent(words[0])
        if percent is None:
            shown = words[0]
            raise ConfigError(f'invalid percent value "{shown}"', e.file, e.line)
        # nginx ignores words after the value; a part without one has an empty value.
        percents.append((percent, words[1] if len(words) > 1 else ""))
    total = bound = 0
    for percent, value in percents:
        total = total + percent if percent else _HUNDRED_PERCENT
        if total > _HUNDRED_PERCENT:
            # Checked when the block is closed: nginx names the line of its "}".
            raise ConfigError("percent total is greater than 100%", d.file, d.end_line)
        if percent:
            bound = (bound + percent * _HASH_SPACE // _HUNDRED_PERCENT) & 0xFFFFFFFF
            block.parts.append((bound, value))
        else:
            block.parts.append((0, value))
    return block


def _percent(text: str) -> int | None:
    """``"0.5%"`` -> 50 (hundredths, nginx's ngx_atofp with two decimals); None if invalid."""
    if not text.endswith("%"):
        return None
    number = text[:-1]
    whole, dot, fraction = number.partition(".")
    if not number or "." in fraction or len(fraction) > 2 \
            or not (whole + fraction).isdigit() or not (whole + fraction).isascii():
        return None
    value = int(whole or "0") * 100 + int(fraction.ljust(2, "0") or "0")
    return value or None


_CAPTURING = frozenset({"location", "rewrite", "if", "server_name"})


def declared_variables(block: list[Directive]) -> dict[str, Directive | None]:
    """Every variable the http block defines: name -> its map/split_clients/geo/set, or None.

    A ``set`` directive stands for a variable that only ``set`` gives a value, None for a
    named regex capture.
    nginx knows them all before it checks any template, so a map may be used above it.
    """
    found: dict[str, Directive | None] = {}

    def walk(directives: list[Directive]) -> None:
        for d in directives:
            if d.name == "geo":
                found[geo.variable_name(d)] = d
                continue
            if d.name in ("map", "split_clients"):
                found[variable_name(d)] = d
                if d.name == "map":
                    for e in d.block:
                        if e.name.startswith("~"):
                            for name in named_captures(e.name):
                                found.setdefault(name, None)
                continue
            if d.name in ("set", "auth_request_set") and d.args and d.args[0].startswith("$"):
                if found.get(d.args[0][1:]) is None:
                    found[d.args[0][1:]] = d
            elif d.name in _CAPTURING:
                for arg in d.args:
                    for name in named_captures(arg):
                        found.setdefault(name, None)
            if d.block:
                walk(d.block)

    walk(block)
    return found
