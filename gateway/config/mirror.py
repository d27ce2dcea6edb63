"""``mirror URI|off`` and ``mirror_request_body on|off`` (ngx_http_mirror_module), read as
nginx does; gateway/http/mirror.py runs the mirrors."""

from __future__ import annotations

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"mirror", "mirror_request_body"})


def read(d: Directive, own: dict) -> None:
    """Put one directive in ``own`` (LocationSettings fields set at this level).

    A level's ``mirror`` lines add up; ``off`` (an empty tuple) stands alone, as in
    ngx_http_mirror: "off" after a URI, or anything after "off", "is duplicate". A level
    without ``mirror`` keeps its parent's list whole (ngx_conf_merge_ptr_value).
    """
    if d.name == "mirror_request_body":
        own["mirror_request_body"] = values.flag(d.args[0])
        return
    uri = d.args[0]
    if "mirrors" in own and (uri == "off" or not own["mirrors"]):
        raise ConfigError('"mirror" directive is duplicate', d.file, d.line)
    own["mirrors"] = () if uri == "off" else own.get("mirrors", ()) + (uri,)
