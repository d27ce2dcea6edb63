"""limit_rate, limit_rate_after and add_trailer, read in nginx's wording.

``limit_rate`` and ``limit_rate_after`` are nginx's complex-value sizes
(ngx_http_set_complex_value_size_slot): a size checked at load, or text with variables
that is parsed per request. ``add_trailer`` is ngx_http_headers_module's twin of add_header.
"""

from __future__ import annotations

from gateway.config import values
from gateway.config.model import AddHeader
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"limit_rate", "limit_rate_after", "add_trailer"})


def read(d: Directive, own: dict, lists: dict, compile_template) -> None:
    """Put one directive's value in ``own`` (or ``lists`` for add_trailer)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n == "add_trailer":
        if len(a) == 3 and a[2] != "always":
            raise ConfigError(f'invalid parameter "{a[2]}"', f, ln)
        compile_template(a[1], f, ln)
        lists.setdefault("add_trailers", []).append(AddHeader(a[0], a[1], len(a) == 3))
        return
    compile_template(a[0], f, ln)
    if "$" in a[0]:
        own[n] = a[0]           # a template, parsed as a size per request
        return
    own[n] = values.size(n, a[0], f, ln)
