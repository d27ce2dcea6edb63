"""``secure_link``, ``secure_link_md5`` and ``secure_link_secret``
(ngx_http_secure_link_module), read and merged as nginx does."""

from __future__ import annotations

from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"secure_link", "secure_link_md5", "secure_link_secret"})


def read(d: Directive, own: dict, check_template) -> None:
    """Put one directive's value in ``own`` (LocationSettings fields set at this level)."""
    if d.name != "secure_link_secret":
        check_template(d.args[0], d.file, d.line)
    own[d.name] = d.args[0]


def resolve(merged: dict, own: dict, http_end: tuple) -> None:
    """nginx's ngx_http_secure_link_merge_conf: a level's own secret stands alone; otherwise
    the expression and md5 are inherited one by one, and the secret only without either.

    ``http_end`` (file, line) is where nginx merges, so where it places its error."""
    if "secure_link_secret" in own:
        if "secure_link" in own or "secure_link_md5" in own:
            raise ConfigError('"secure_link_secret" cannot be mixed with "secure_link" and '
                              '"secure_link_md5"', *http_end)
        merged.pop("secure_link", None)
        merged.pop("secure_link_md5", None)
    elif "secure_link" in merged or "secure_link_md5" in merged:
        merged.pop("secure_link_secret", None)
