"""Directives of static file serving beyond root/index: autoindex (ngx_http_autoindex_module)
and core's disable_symlinks, read in nginx's wording."""

from __future__ import annotations

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = ("autoindex", "autoindex_format", "autoindex_exact_size", "autoindex_localtime",
              "disable_symlinks")
FORMATS = ("html", "xml", "json", "jsonp")


def level_setting(d: Directive, own: dict, check_template) -> None:
    """One of DIRECTIVES at an http, server or location level."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n == "autoindex_format":
        # ngx_conf_set_enum_slot compares without case.
        if a[0].lower() not in FORMATS:
            raise ConfigError(f'invalid value "{a[0]}"', f, ln)
        own[n] = a[0].lower()
    elif n == "disable_symlinks":
        own[n], own["disable_symlinks_from"] = _disable_symlinks(d, check_template)
    else:
        own[n] = values.flag(a[0])


def _disable_symlinks(d: Directive, check_template) -> tuple[str, str | None]:
    """(off, on or if_not_owner; the from= template or None), as ngx_http_disable_symlinks."""
    mode = source = None
    for word in d.args:
        if word in ("off", "on", "if_not_owner"):
            mode = word
        elif word.startswith("from="):
            source = word[5:]
            check_template(source, d.file, d.line)
        else:
            raise ConfigError(f'invalid parameter "{word}"', d.file, d.line)
    if mode is None:
        raise ConfigError('"disable_symlinks" must have "off", "on" or "if_not_owner" parameter',
                          d.file, d.line)
    if len(d.args) == 1:
        return mode, None
    if source is None:
        raise ConfigError(f'duplicate parameters "{d.args[0]} {d.args[1]}"', d.file, d.line)
    if mode == "off":
        raise ConfigError('"from=" cannot be used with "off" parameter', d.file, d.line)
    return mode, source
