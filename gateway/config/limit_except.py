"""nginx's ``limit_except METHOD ... { ... }`` (ngx_http_core_limit_except): the methods a
location's block spares, and what the nameless location it opens takes from its location.

The directives nginx allows inside (NGX_HTTP_LMT_CONF: allow, deny, auth_basic,
auth_basic_user_file, access_log, proxy_pass, include) list the context in directives.py.
"""

from __future__ import annotations

from gateway.errors import ConfigError

# ngx_methods_names: the only names limit_except knows.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "OPTIONS",
                     "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH"})

# What the nameless location does not take from its location. Its rewrite module's codes
# start empty (so the location's `return` and script do not run for the methods it limits),
# try_files and the content handlers are the location's own, except proxy_pass, which nginx's
# proxy module copies into every nameless location (ngx_http_proxy_merge_loc_conf); the
# gateway's unikernel_pass follows proxy_pass.
NOT_INHERITED = frozenset({"return_", "rewrite", "try_files", "stub_status", "metrics",
                           "status_json", "status_page"})


def methods(args: list[str], file: str, line: int) -> frozenset[str]:
    """The methods the block spares: names compared without case, GET bringing HEAD."""
    spared = set()
    for word in args:
        name = word.upper() if word.isascii() else word    # ngx_strcasecmp folds ASCII only
        if name not in METHODS:
            raise ConfigError(f'invalid method "{word}"', file, line)
        spared.add(name)
    if "GET" in spared:
        spared.add("HEAD")
    return frozenset(spared)


def inherit(location: dict, own: dict) -> dict:
    """The block's merged settings: its location's (as merged for it), then its own."""
    merged = {k: v for k, v in location.items() if k not in NOT_INHERITED}
    if "proxy_pass" in own:
        merged.pop("unikernel_pass", None)
    merged.update(own)
    return merged
