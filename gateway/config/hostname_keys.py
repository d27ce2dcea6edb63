"""nginx's ngx_hash_add_key for host names: exact keys and the wildcard forms.

``map ... { hostnames; }`` and ``valid_referers`` keep their keys the way nginx's hash of
host names does: "*.example.com" and ".example.com" match from the left, "www.example.*"
from the right, and ".example.com" is "example.com" too. Both report bad and repeated keys
in the same words.
"""

from __future__ import annotations

from gateway.errors import ConfigError


def add_key(exact: dict, head: dict, tail: dict, key: str, value, file: str, line: int) -> None:
    """Put ``key`` into ``exact``, ``head`` (leading wildcard, stored without it) or ``tail``
    (trailing wildcard, stored without it), as ngx_hash_add_key with NGX_HASH_WILDCARD_KEY."""
    lower = key.lower()
    # nginx lowercases the key in place before it reports a conflict.
    conflict = ConfigError(f'conflicting parameter "{lower}"', file, line)
    invalid = ConfigError(f'invalid hostname or wildcard "{key}"', file, line)
    if ".." in key or "\0" in key:
        raise invalid
    if "*" not in key and not key.startswith("."):
        if lower in exact:
            raise conflict
        exact[lower] = value
        return
    if lower.startswith("*.") and "*" not in lower[2:] and len(lower) > 2:
        table, name = head, lower[2:]
    elif lower.startswith(".") and "*" not in lower and len(lower) > 1:
        # ".example.com" is both "example.com" and "*.example.com".
        table, name = head, lower[1:]
        if name in exact:
            raise conflict
        exact[name] = value
    elif lower.endswith(".*") and "*" not in lower[:-2] and len(lower) > 2:
        table, name = tail, lower[:-2]
    else:
        raise invalid
    if name in table:
        raise conflict
    table[name] = value
