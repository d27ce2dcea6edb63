"""``valid_referers`` (ngx_http_referer_module), read in nginx's wording.

A level's ``valid_referers`` lines add up; at the end of the level they are resolved with the
enclosing server's names (``server_names``) and what the level inherits, as nginx's
ngx_http_referer_merge_conf does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import hostname_keys, maps, values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"valid_referers", "referer_hash_max_size", "referer_hash_bucket_size"})


@dataclass
class ValidReferers:
    """The merged ``valid_referers`` of a level (gateway/http/referer.py reads it)."""

    # host -> the URI prefix the referer's path must start with, or None for any path
    exact: dict[str, str | None] = field(default_factory=dict)
    head: dict[str, str | None] = field(default_factory=dict)    # "*.example.com" -> "example.com"
    tail: dict[str, str | None] = field(default_factory=dict)    # "www.example.*" -> "www.example"
    regexes: tuple = ()                  # ~REGEX, caseless, searched in the referer after "http://"
    server_name_regexes: tuple = ()      # server_names' ~REGEX, searched in the host
    none: bool = False
    blocked: bool = False


@dataclass
class Pending:
    """The ``valid_referers`` lines of one level, before the level is merged."""

    words: list[tuple[str, Directive]] = field(default_factory=list)
    regexes: list = field(default_factory=list)
    none: bool = False
    blocked: bool = False
    server_names: bool = False


def read(d: Directive, own: dict) -> None:
    """Add one valid_referers line (or check a referer_hash_* one) to the level's ``own``."""
    if d.name != "valid_referers":
        # Sizes of nginx's hash of names: checked, nothing to tune here.
        values.number(d.name, d.args[0], d.file, d.line)
        return
    pending = own.setdefault("valid_referers", Pending())
    for word in d.args:
        if not word:
            raise ConfigError(f'invalid referer "{word}"', d.file, d.line)
        if word == "none":
            pending.none = True
        elif word == "blocked":
            pending.blocked = True
        elif word == "server_names":
            pending.server_names = True
        elif word[0] == "~":
            if len(word) == 1:
                raise ConfigError(f'empty regex in "{word}"', d.file, d.line)
            pending.regexes.append(maps.regex(word[1:], True, d.file, d.line))
        else:
            pending.words.append((word, d))


def resolve(merged: dict, own: dict, parent: dict, server_names: list[str],
            server_name_regexes: tuple, http_end: tuple) -> None:
    """Replace this level's Pending in ``merged`` by its ValidReferers (inherited otherwise).

    ``http_end`` (file, line) is where nginx merges, so where it places a server name's error.
    """
    pending = own.get("valid_referers")
    if not isinstance(pending, Pending):
        return
    before = parent.get("valid_referers")
    result = ValidReferers(none=pending.none, blocked=pending.blocked)
    name_regexes: tuple = ()
    for word, d in pending.words:
        slash = word.find("/")
        host, uri = (word[:slash], word[slash:]) if slash >= 0 else (word, None)
        _add(result, host, uri, d.file, d.line)
    if pending.server_names:
        for name in server_names:
            if name.startswith("~"):
                continue
            _add(result, name, None, *http_end)
        name_regexes = server_name_regexes
    if (pending.none or pending.blocked) and not (result.exact or result.head or result.tail):
        raise ConfigError('the "none" or "blocked" referers are specified in the '
                          '"valid_referers" directive without any valid referer')
    # Regexes a level does not give are its parent's (ngx_conf_merge_ptr_value).
    result.regexes = tuple(pending.regexes) or (before.regexes if before else ())
    result.server_name_regexes = name_regexes or (before.server_name_regexes if before else ())
    merged["valid_referers"] = result


def _add(result: ValidReferers, key: str, uri: str | None, file: str, line: int) -> None:
    """nginx's ngx_hash_add_key with NGX_HASH_WILDCARD_KEY, as ngx_http_add_referer calls it."""
    hostname_keys.add_key(result.exact, result.head, result.tail, key, uri, file, line)
