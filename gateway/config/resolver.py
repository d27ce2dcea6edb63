"""``resolver`` and ``resolver_timeout`` (ngx_http_core_module, ngx_resolver.c), read in nginx's
wording: the name servers a ``proxy_pass`` with variables asks when its host is a name that no
``upstream`` block declares (gateway/http/resolver.py asks them)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import addresses, values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({"resolver", "resolver_timeout"})
DNS_PORT = 53


@dataclass(frozen=True)
class Resolver:
    """One ``resolver`` line: equal lines share one runtime in a worker."""

    servers: tuple[tuple[str, int], ...]     # (address, port), in the order written
    valid: float | None = None               # valid=: overrides the answers' TTL
    ipv4: bool = True                        # ask A records
    ipv6: bool = True                        # ask AAAA records (nginx's default: both)


def read(d: Directive, own: dict) -> None:
    a, f, ln = d.args, d.file, d.line
    if d.name == "resolver_timeout":
        own["resolver_timeout"] = values.time(d.name, a[0], f, ln)
        return
    servers: list[tuple[str, int]] = []
    options = {"valid": None, "ipv4": True, "ipv6": True}
    for arg in a:
        if arg.startswith("valid="):
            seconds = values.parse_time(arg[6:])
            if seconds is None:
                raise ConfigError(f"invalid parameter: {arg}", f, ln)
            options["valid"] = seconds
        elif arg.startswith(("ipv4=", "ipv6=")):
            if arg[5:] not in ("on", "off"):
                raise ConfigError(f"invalid parameter: {arg}", f, ln)
            options[arg[:4]] = arg[5:] == "on"
        else:
            servers.extend(_servers(arg, f, ln))
    if not (options["ipv4"] or options["ipv6"]):
        raise ConfigError('"ipv4" and "ipv6" cannot both be "off"', f, ln)
    if not servers:
        raise ConfigError("no name servers defined", f, ln)
    own["resolver"] = Resolver(tuple(servers), **options)


def _servers(text: str, file: str, line: int) -> list[tuple[str, int]]:
    """A name server as ngx_parse_url reads it (port 53 by default; a name is resolved now)."""
    host, port = addresses.split_host_port(text)
    if not host:
        raise ConfigError(f'invalid host in resolver "{text}"', file, line)
    number = DNS_PORT
    if port is not None:
        number = addresses.valid_port(port)
        if number is None:
            raise ConfigError(f'invalid port in resolver "{text}"', file, line)
    found = addresses.resolve(host, number)
    if not found:
        raise ConfigError(f'host not found in resolver "{text}"', file, line)
    return [(address, number) for address in found]
