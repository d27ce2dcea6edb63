"""Building ``listen``: addresses, parameters and nginx's per-socket rules."""

from __future__ import annotations

import ipaddress

from gateway.config import addresses
from gateway.config.model import Listen, Server
from gateway.config.parser import Directive
from gateway.errors import ConfigError

LISTEN_UNSUPPORTED = {"quic", "spdy", "accept_filter", "setfib"}
LISTEN_IGNORED = {"bind", "deferred", "fastopen", "rcvbuf", "sndbuf", "so_keepalive"}


class ListenBuilder:
    """The Builder's part for ``listen`` (a mixin: it uses the Builder's warnings)."""

    def _listen(self, d: Directive) -> list[Listen]:
        addr, f, ln = d.args[0], d.file, d.line
        if addr.startswith("unix:"):
            raise ConfigError('"listen" on a unix socket is not supported by this gateway',
                              f, ln)
        if not addr:
            raise ConfigError('no host in "" of the "listen" directive', f, ln)
        if addr.isdigit():
            host, port_text = "*", addr
        else:
            host, port_text = addresses.split_host_port(addr)
            if host is None:
                raise ConfigError(f'invalid host in "{addr}" of the "listen" directive', f, ln)
            if port_text is None:
                port_text = "80"
        port = addresses.valid_port(port_text)
        if port is None:
            raise ConfigError(f'invalid port in "{addr}" of the "listen" directive', f, ln)
        opts = {"default_server": False, "reuseport": False, "backlog": 511, "ipv6only": True,
                "ssl": False, "proxy_protocol": False, "http2": False}
        socket_opts = False
        for p in d.args[1:]:
            socket_opts = socket_opts or p == "reuseport" or p.startswith(("backlog=", "ipv6only="))
            if p in ("default_server", "default"):
                opts["default_server"] = True
            elif p == "reuseport":
                opts["reuseport"] = True
            elif p.startswith("backlog="):
                v = p[len("backlog="):]
                if not v.isdigit() or int(v) == 0:
                    raise ConfigError(f'invalid backlog "{p}"', f, ln)
                opts["backlog"] = int(v)
            elif p in ("ipv6only=on", "ipv6only=off"):
                opts["ipv6only"] = p == "ipv6only=on"
            elif p in ("ssl", "proxy_protocol", "http2"):
                opts[p] = True
            elif p in LISTEN_UNSUPPORTED:
                raise ConfigError(f'"listen" parameter "{p}" is not supported by this gateway',
                                  f, ln)
            elif p.split("=", 1)[0] in LISTEN_IGNORED:
                self.warnings.append(f'"listen" parameter "{p}" is accepted but not acted on '
                                     f'in {f}:{ln}')
            else:
                raise ConfigError(f'invalid parameter "{p}"', f, ln)
        if host == "*":
            hosts = ["0.0.0.0"]
        else:
            try:
                hosts = [str(ipaddress.ip_address(host))]
            except ValueError:
                hosts = addresses.resolve(host, port)
                if not hosts:
                    raise ConfigError(f'host not found in "{addr}" of the "listen" directive',
                                      f, ln) from None
        listens = [Listen(h, port, file=f, line=ln, **opts) for h in hosts]
        if socket_opts:
            self.listens_with_options.update(id(x) for x in listens)
        return listens

    def _check_listens(self, servers: list[Server]) -> None:
        """nginx's per-socket rules; socket options are copied to every server on it."""
        defaults: set[tuple[str, int]] = set()
        with_options: dict[tuple[str, int], Listen] = {}
        names: set[tuple[tuple[str, int], str]] = set()
        for server in servers:
            own: set[tuple[str, int]] = set()
            for listen in server.listens:
                where = addresses.show(listen.key)
                for name in server.server_names:
                    # nginx keeps the first server for a name and ignores the others.
                    if (listen.key, name) in names and listen.key not in own:
                        self.warnings.append(f'conflicting server name "{name}" on {where}, '
                                             'ignored')
                    names.add((listen.key, name))
                if listen.key in own:
                    raise ConfigError(f"a duplicate listen {where}", listen.file, listen.line)
                own.add(listen.key)
                if listen.default_server:
                    if listen.key in defaults:
                        raise ConfigError(f"a duplicate default server for {where}",
                                          listen.file, listen.line)
                    defaults.add(listen.key)
                if id(listen) in self.listens_with_options:
                    if listen.key in with_options:
                        raise ConfigError(f"duplicate listen options for {where}",
                                          listen.file, listen.line)
                    with_options[listen.key] = listen
        # nginx ORs "ssl" over every listen of one address: one ssl listen makes the socket TLS.
        tls_keys = {listen.key for server in servers for listen in server.listens if listen.ssl}
        pp_keys = {listen.key for server in servers for listen in server.listens
                   if listen.proxy_protocol}     # and "proxy_protocol" the same way
        for server in servers:
            for listen in server.listens:
                listen.ssl = listen.key in tls_keys
                listen.proxy_protocol = listen.key in pp_keys
                if listen.ssl and listen.proxy_protocol:
                    raise ConfigError('"listen ... ssl proxy_protocol" is not supported by this '
                                      'gateway', listen.file, listen.line)
                src = with_options.get(listen.key)
                if src is not None:
                    listen.reuseport, listen.backlog = src.reuseport, src.backlog
                    listen.ipv6only = src.ipv6only
