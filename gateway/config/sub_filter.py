"""``sub_filter``, ``sub_filter_once``, ``sub_filter_types`` and ``sub_filter_last_modified``
(ngx_http_sub_module), read in nginx's wording."""

from __future__ import annotations

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"sub_filter", "sub_filter_once", "sub_filter_types",
                        "sub_filter_last_modified"})
_MAX_PATTERNS = 255


def read(d: Directive, own: dict, lists: dict, warnings: list[str], check_template) -> None:
    """Put one directive's value in ``own`` (a level's sub_filter lines in ``lists``)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n in ("sub_filter_once", "sub_filter_last_modified"):
        own[n] = values.flag(a[0])
    elif n == "sub_filter_types":
        values.mime_types(d, own, "sub_filter_types", warnings)
    else:
        if not a[0]:
            raise ConfigError("empty search pattern", f, ln)
        pairs = lists.setdefault("sub_filters", [])
        if len(pairs) == _MAX_PATTERNS:
            raise ConfigError("number of search patterns exceeds 255", f, ln)
        check_template(a[0], f, ln)
        check_template(a[1], f, ln)
        pairs.append((a[0], a[1]))

