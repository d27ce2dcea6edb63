"""``random_index on|off`` (ngx_http_random_index_module): location only, inherited by nested
locations; gateway/http/random_index.py answers with it."""

from __future__ import annotations

from gateway.config import values
from gateway.config.parser import Directive

DIRECTIVES = frozenset({"random_index"})


def read(d: Directive, own: dict) -> None:
    """Put the level's random_index flag in ``own`` (LocationSettings fields)."""
    own["random_index"] = values.flag(d.args[0])
