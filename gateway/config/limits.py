"""limit_req_zone / limit_req and limit_conn_zone / limit_conn, read in nginx's wording.

Zones are declared at the http level and their shared memory is made here, while the master
builds the configuration and before it forks (gateway/http/zones.py). A `limit_req` or
`limit_conn` names its zone; the name is resolved once the http block is read, so a zone may be
declared after its first use, as in nginx.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.parser import Directive
from gateway.config.values import parse_size
from gateway.errors import ConfigError

ZONE_DIRECTIVES = ("limit_req_zone", "limit_conn_zone")
LEVEL_DIRECTIVES = ("limit_req", "limit_req_status", "limit_req_log_level", "limit_req_dry_run",
                    "limit_conn", "limit_conn_status", "limit_conn_log_level", "limit_conn_dry_run")
LOG_LEVELS = ("info", "notice", "warn", "error")
# nginx refuses zones smaller than 8 pages.
MIN_ZONE = 8 * 4096
# nginx's "nodelay": a delay threshold no excess reaches (NGX_MAX_INT_T_VALUE / 1000).
NODELAY = (2 ** 63 - 1) // 1000


@dataclass
class LimitReq:
    """One ``limit_req``: its zone (resolved after the http block), burst and delay in
    milli-requests."""

    zone_name: str
    burst: int
    delay: int
    zone: object = None
    file: str | None = None
    line: int | None = None


@dataclass
class LimitConn:
    """One ``limit_conn``: its zone and the number of requests a key may have at once."""

    zone_name: str
    conn: int
    zone: object = None
    file: str | None = None
    line: int | None = None


def zones(block: list[Directive], check_template) -> dict:
    """The zones an http block declares: name -> (kind, the shared zone)."""
    found: dict = {}
    for d in block:
        if d.name not in ZONE_DIRECTIVES:
            continue
        # The runtime side owns the memory; imported only by configs with zones (multiprocessing).
        from gateway.http import zones as shared
        check_template(d.args[0], d.file, d.line)
        kind = d.name[:-len("_zone")]
        name, size, rate = "", 0, 1000
        for arg in d.args[1:]:
            if arg.startswith("zone="):
                name, colon, size_text = arg[5:].partition(":")
                size = parse_size(size_text) if colon else None
                if size is None:
                    raise ConfigError(f'invalid zone size "{arg}"', d.file, d.line)
                if size < MIN_ZONE:
                    raise ConfigError(f'zone "{arg}" is too small', d.file, d.line)
            elif kind == "limit_req" and arg.startswith("rate="):
                rate = _rate(arg, d)
            else:
                raise ConfigError(f'invalid parameter "{arg}"', d.file, d.line)
        if not name:
            raise ConfigError(f'"{d.name}" must have "zone" parameter', d.file, d.line)
        if name in found:
            other_kind, other = found[name]
            if other_kind != kind:
                raise ConfigError(f'the shared memory zone "{name}" is already declared for a '
                                  'different use', d.file, d.line)
            raise ConfigError(f'{d.name} "{name}" is already bound to key "{other.key}"',
                              d.file, d.line)
        found[name] = (kind, shared.zone(kind, name, d.args[0], size, rate))
    return found


def _rate(arg: str, d: Directive) -> int:
    """nginx's rate: requests a second or a minute, kept in milli-requests a second."""
    text, scale = arg[5:], 1
    if text.endswith("r/s"):
        text = text[:-3]
    elif text.endswith("r/m"):
        text, scale = text[:-3], 60
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f'invalid rate "{arg}"', d.file, d.line)
    return int(text) * 1000 // scale


def level_setting(d: Directive, own: dict, lists: dict, pending: list) -> None:
    """One of LEVEL_DIRECTIVES at an http, server or location level; new limits join
    ``pending`` (resolve() gives them their zones)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n == "limit_req":
        limits = lists.setdefault("limit_reqs", [])
        limit = _limit_req(d)
        if any(other.zone_name == limit.zone_name for other in limits):
            raise ConfigError('"limit_req" directive is duplicate', f, ln)
        limits.append(limit)
        pending.append(limit)
    elif n == "limit_conn":
        limits = lists.setdefault("limit_conns", [])
        if any(other.zone_name == a[0] for other in limits):
            raise ConfigError('"limit_conn" directive is duplicate', f, ln)
        if not a[1].isdigit() or int(a[1]) <= 0:
            raise ConfigError(f'invalid number of connections "{a[1]}"', f, ln)
        if int(a[1]) > 65535:
            raise ConfigError("connection limit must be less 65536", f, ln)
        limit = LimitConn(a[0], int(a[1]), file=f, line=ln)
        limits.append(limit)
        pending.append(limit)
    elif n.endswith("_status"):
        if not a[0].isdigit():
            raise ConfigError(f'"{n}" directive invalid number', f, ln)
        if not 400 <= int(a[0]) <= 599:
            raise ConfigError("value must be between 400 and 599", f, ln)
        own[n] = int(a[0])
    elif n.endswith("_log_level"):
        if a[0] not in LOG_LEVELS:
            raise ConfigError(f'invalid value "{a[0]}"', f, ln)
        own[n] = a[0]
    else:
        own[n] = a[0] == "on"


def _limit_req(d: Directive) -> LimitReq:
    zone_name, burst, delay = None, 0, 0
    for arg in d.args:
        if arg.startswith("zone="):
            zone_name = arg[5:]
        elif arg.startswith("burst="):
            burst = _positive(arg, 6, "burst", d)
        elif arg.startswith("delay="):
            delay = _positive(arg, 6, "delay", d)
        elif arg == "nodelay":
            delay = NODELAY
        else:
            raise ConfigError(f'invalid parameter "{arg}"', d.file, d.line)
    if zone_name is None:
        raise ConfigError('"limit_req" must have "zone" parameter', d.file, d.line)
    return LimitReq(zone_name, burst * 1000, delay * 1000, file=d.file, line=d.line)


def _positive(arg: str, skip: int, what: str, d: Directive) -> int:
    text = arg[skip:]
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f'invalid {what} value "{arg}"', d.file, d.line)
    return int(text)


def resolve(limits: list, declared: dict) -> None:
    """Give each limit_req and limit_conn its zone (after the whole http block is read)."""
    for limit in limits:
        kind = "limit_req" if isinstance(limit, LimitReq) else "limit_conn"
        found = declared.get(limit.zone_name)
        if found is None:
            raise ConfigError(f'zero size shared memory zone "{limit.zone_name}"',
                              limit.file, limit.line)
        if found[0] != kind:
            raise ConfigError(f'the shared memory zone "{limit.zone_name}" is already declared '
                              'for a different use', limit.file, limit.line)
        limit.zone = found[1]
