"""Building ``upstream`` blocks (ngx_http_upstream_module): servers, methods, keepalive."""

from __future__ import annotations

from gateway.config import addresses, values
from gateway.config.model import Balance, HealthCheck, Upstream, UpstreamServer
from gateway.config.parser import Directive
from gateway.errors import ConfigError


class UpstreamBuilder:
    """The Builder's part for upstream blocks (a mixin: it uses the Builder's warnings)."""

    def _upstream(self, d: Directive) -> None:
        name = d.args[0]
        if name in self.http.upstreams:
            raise ConfigError(f'duplicate upstream "{name}"', d.file, d.line)
        up = Upstream(name, [], file=d.file, line=d.line)
        method_set = False
        for e in d.block:
            if self._warn_ignored(e):
                continue
            a, f, ln, n = e.args, e.file, e.line, e.name
            if n == "server":
                servers = self._upstream_server(e)
                # nginx checks this when it reads the server line: a backup server listed
                # before the method is accepted (and then ignored by that method).
                if servers[0].backup and up.balance.method in ("hash", "ip_hash", "random"):
                    raise ConfigError('balancing method does not support parameter "backup"',
                                      f, ln)
                up.servers.extend(servers)
            elif n == "keepalive":
                if not a[0].isdigit() or int(a[0]) == 0:
                    raise ConfigError(f'invalid value "{a[0]}" in "keepalive" directive', f, ln)
                up.keepalive = int(a[0])
            elif n == "keepalive_timeout":
                up.keepalive_timeout = values.time(n, a[0], f, ln)
            elif n == "keepalive_requests":
                up.keepalive_requests = values.number(n, a[0], f, ln)
            elif n in ("least_conn", "ip_hash", "hash", "random", "least_time"):
                if method_set:
                    self.warnings.append(f"load balancing method redefined in {f}:{ln}")
                method_set = True
                up.balance = self._balance(e)
            elif n == "health_check":
                up.health_check = self._health_check(e)
        if not up.servers:
            # nginx notices this when the block closes, so it names the "}" line.
            raise ConfigError("no servers are inside upstream", d.file, d.end_line)
        if all(s.backup for s in up.servers):
            raise ConfigError(f'no servers in upstream "{name}"', d.file, d.line)
        self.http.upstreams[name] = up

    def _balance(self, e: Directive) -> Balance:
        a, f, ln = e.args, e.file, e.line
        if e.name in ("least_conn", "ip_hash"):
            return Balance(e.name)
        if e.name == "hash":
            if len(a) == 2 and a[1] != "consistent":
                raise ConfigError(f'invalid parameter "{a[1]}"', f, ln)
            values.check_template(a[0], f, ln)
            return Balance("hash", key=a[0], consistent=len(a) == 2)
        if e.name == "random":
            if not a:
                return Balance("random")
            if a[0] != "two":
                raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
            if len(a) == 2 and a[1] != "least_conn":
                raise ConfigError(f'invalid parameter "{a[1]}"', f, ln)
            return Balance("random", two=True)
        # least_time header|last_byte [inflight]
        if a[0] not in ("header", "last_byte") or (len(a) == 2 and a[1] != "inflight"):
            bad = a[0] if a[0] not in ("header", "last_byte") else a[1]
            raise ConfigError(f'invalid parameter "{bad}"', f, ln)
        return Balance("least_time", least_time=a[0])

    def _upstream_server(self, e: Directive) -> list[UpstreamServer]:
        addr, f, ln = e.args[0], e.file, e.line
        if addr.startswith("unix:"):
            raise ConfigError("upstream servers on unix sockets are not supported by this "
                              "gateway", f, ln)
        opts: dict = {}
        for p in e.args[1:]:
            key, _, v = p.partition("=")
            if key == "weight" and v.isdigit() and int(v) > 0:
                opts["weight"] = int(v)
            elif key == "max_fails" and v.isdigit():
                opts["max_fails"] = int(v)
            elif key == "max_conns" and v.isdigit():
                opts["max_conns"] = int(v)
            elif key == "fail_timeout" and values.parse_time(v) is not None:
                opts["fail_timeout"] = values.parse_time(v)
            elif p in ("backup", "down"):
                opts[p] = True
            else:
                raise ConfigError(f'invalid parameter "{p}"', f, ln)
        host, port_text = addresses.split_host_port(addr)
        if host is None:
            raise ConfigError(f'invalid host in upstream "{addr}"', f, ln)
        if not host:
            raise ConfigError(f'no host in upstream "{addr}"', f, ln)
        port = 80 if port_text is None else addresses.valid_port(port_text)
        if port is None:
            raise ConfigError(f'invalid port in upstream "{addr}"', f, ln)
        addrs = addresses.resolve(host, port)
        if not addrs:
            raise ConfigError(f'host not found in upstream "{addr}"', f, ln)
        return [UpstreamServer(addr, a, port, **opts) for a in addrs]

    def _health_check(self, e: Directive) -> HealthCheck:
        hc = HealthCheck()
        for p in e.args:
            key, _, v = p.partition("=")
            if key in ("interval", "timeout") and values.parse_time(v):
                setattr(hc, key, values.parse_time(v))
            elif key in ("fails", "passes") and v.isdigit() and int(v) > 0:
                setattr(hc, key, int(v))
            elif key == "uri" and v.startswith("/"):
                hc.uri = v
            else:
                raise ConfigError(f'invalid parameter "{p}"', e.file, e.line)
        return hc
