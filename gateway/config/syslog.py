"""`syslog:` targets of access_log and error_log, read as nginx's ngx_syslog.c reads them.

``syslog:server=ADDR[:PORT]|unix:PATH[,facility=F][,severity=S][,tag=T][,nohostname]``; every
error is nginx's wording (`nginx -t` agrees, tests/config/test_observe_directives.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket

from gateway.config import addresses
from gateway.config.model import Syslog
from gateway.errors import ConfigError

PREFIX = "syslog:"
DEFAULT_PORT = 514
# Indexed by their syslog codes (RFC 5424 section 6.2.1); "error" and "warn" as in nginx.conf.
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp",
              "clock", "authpriv", "ftp", "ntp", "audit", "alert", "cron", "local0",
              "local1", "local2", "local3", "local4", "local5", "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
TAG_MAX = 32                             # RFC 3164: at most 32 alphanumeric characters
_TAG = re.compile(r"[0-9A-Za-z_]*\Z")
_SUN_PATH = 108                          # sizeof(sockaddr_un.sun_path) on Linux, with the NUL


def is_syslog(path: str) -> bool:
    """Whether an access_log or error_log target is a syslog one."""
    return path.startswith(PREFIX)


def parse(text: str, file: str, line: int) -> Syslog:
    """The `syslog:...` argument of access_log or error_log (ngx_syslog_process_conf)."""
    server = facility = severity = tag = None
    nohostname = False
    for param in text[len(PREFIX):].split(","):
        if param.startswith("server="):
            if server is not None:
                raise ConfigError('duplicate syslog "server"', file, line)
            server = _server(param[7:], file, line)
        elif param.startswith("facility="):
            if facility is not None:
                raise ConfigError('duplicate syslog "facility"', file, line)
            if param[9:] not in FACILITIES:
                raise ConfigError(f'unknown syslog facility "{param[9:]}"', file, line)
            facility = FACILITIES.index(param[9:])
        elif param.startswith("severity="):
            if severity is not None:
                raise ConfigError('duplicate syslog "severity"', file, line)
            if param[9:] not in SEVERITIES:
                raise ConfigError(f'unknown syslog severity "{param[9:]}"', file, line)
            severity = SEVERITIES.index(param[9:])
        elif param.startswith("tag="):
            if tag is not None:
                raise ConfigError('duplicate syslog "tag"', file, line)
            tag = param[4:]
            if len(tag.encode()) > TAG_MAX:
                raise ConfigError(f"syslog tag length exceeds {TAG_MAX}", file, line)
            if not _TAG.match(tag):
                raise ConfigError('syslog "tag" only allows alphanumeric characters '
                                  "and underscore", file, line)
        elif param == "nohostname":
            nohostname = True
        else:
            raise ConfigError(f'unknown syslog parameter "{param}"', file, line)
    if server is None:
        raise ConfigError("no syslog server specified", file, line)
    server_text, family, address = server
    # An empty tag= is kept, as nginx keeps it: the header then reads "HOSTNAME : ".
    return Syslog(server_text, family, address,
                  23 if facility is None else facility, 6 if severity is None else severity,
                  "nginx" if tag is None else tag, not nohostname)


def _server(url: str, file: str, line: int) -> tuple[str, int, tuple | str]:
    """(url, family, connect() address) of server=, as ngx_parse_url reads it (default port 514,
    the first address of a name); its errors read `... in syslog server "URL"`."""
    def refuse(err):
        return ConfigError(f'{err} in syslog server "{url}"', file, line)

    if url[:5].lower() == "unix:":
        path = url[5:]
        if not path:
            raise refuse("no path in the unix domain socket")
        if len(path.encode()) + 1 > _SUN_PATH:
            raise refuse("too long path in the unix domain socket")
        return url, socket.AF_UNIX, path
    if url.startswith("["):
        end = url.find("]")
        if end < 0 or "/" in url[end:]:
            raise refuse("invalid host")
        host, rest = url[1:end], url[end + 1:]
        if rest and not rest.startswith(":"):
            raise refuse("invalid host")
        port = _port(rest[1:], refuse) if rest else DEFAULT_PORT
        if not host:
            raise refuse("no host")
        try:
            if "%" in host:         # ngx_inet6_addr knows no zone index
                raise ValueError(host)
            ipaddress.IPv6Address(host)
        except ValueError:
            raise refuse("invalid IPv6 address") from None
        return url, socket.AF_INET6, (host, port, 0, 0)
    if "/" in url or "?" in url:
        raise refuse("invalid host")
    host, colon, port_text = url.partition(":")        # the first colon, as ngx_strlchr finds
    port = _port(port_text, refuse) if colon else DEFAULT_PORT
    if not host:
        raise refuse("no host")
    if _dotted_quad(host):
        return url, socket.AF_INET, (host, port)
    found = addresses.resolve(host, port)
    if not found:
        raise refuse("host not found")
    if ":" in found[0]:
        return url, socket.AF_INET6, (found[0], port, 0, 0)
    return url, socket.AF_INET, (found[0], port)


def _port(text: str, refuse) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise refuse("invalid port")
    return int(text)


def _dotted_quad(host: str) -> bool:
    """ngx_inet_addr: four decimal octets, nothing else (no names, no short forms)."""
    parts = host.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts)
