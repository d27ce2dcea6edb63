"""The access phase's directives: allow/deny (ngx_http_access_module), auth_basic and
auth_basic_user_file (ngx_http_auth_basic_module), auth_request and auth_request_set
(ngx_http_auth_request_module) and core's satisfy, in nginx's wording."""

from __future__ import annotations

import ipaddress

from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = ("allow", "deny", "auth_basic", "auth_basic_user_file", "satisfy", "auth_request",
              "auth_request_set")


def level_setting(d: Directive, own: dict, lists: dict, check_template, conf_path, warnings) -> None:
    """One of DIRECTIVES at an http, server or location level."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n in ("allow", "deny"):
        lists.setdefault("access_rules", []).append((_rule(a[0], d, warnings), n == "deny"))
    elif n == "auth_basic":
        check_template(a[0], f, ln)
        own[n] = None if a[0] == "off" else a[0]
    elif n == "auth_request":
        own[n] = None if a[0] == "off" else a[0]
    elif n == "auth_request_set":
        if not a[0].startswith("$"):
            raise ConfigError(f'invalid variable name "{a[0]}"', f, ln)
        check_template(a[1], f, ln)
        lists.setdefault(n, []).append((a[0][1:], a[1]))
    elif n == "auth_basic_user_file":
        check_template(a[0], f, ln)
        own[n] = conf_path(a[0])
    else:
        if a[0] not in ("all", "any"):
            raise ConfigError(f'invalid value "{a[0]}"', f, ln)
        own[n] = a[0]


def _rule(text: str, d: Directive, warnings):
    """An address or CIDR network, None for "all"; "unix:" matches no client of ours."""
    if text == "all":
        return None
    if text == "unix:":
        return "unix:"
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f'invalid parameter "{text}"', d.file, d.line) from None
        warnings.append(f"low address bits of {text} are meaningless in {d.file}:{d.line}")
    return network
