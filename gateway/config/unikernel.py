"""Building ``unikernel`` pools and ``unikernel_pass``: this gateway's own module."""

from __future__ import annotations

from gateway.config import compose, values
from gateway.config.model import Balance, UnikernelPass, UnikernelPool
from gateway.config.parser import Directive
from gateway.errors import ConfigError, UnikernelError
from gateway.unikernel.tunables import Tunables


class UnikernelBuilder:
    """The Builder's part for unikernel pools (a mixin: passes are checked at the end)."""

    def _unikernel(self, d: Directive) -> None:
        name = d.args[0]
        if name in self.http.unikernels:
            raise ConfigError(f'duplicate unikernel "{name}"', d.file, d.line)
        pool = UnikernelPool(name, "", file=d.file, line=d.line)
        for e in d.block:
            a, f, ln, n = e.args, e.file, e.line, e.name
            bad = ConfigError(f'invalid value "{a[-1]}" in "{n}" directive', f, ln)
            if n == "image":
                pool.image = self._path(a[0]) if "/" in a[0] else a[0]
            elif n == "instances":
                # MIN may be 0 (a pool that scales to zero); MAX must allow one worker.
                if not all(x.isdigit() for x in a) or int(a[-1]) < max(1, int(a[0])):
                    raise bad
                pool.min_instances, pool.max_instances = int(a[0]), int(a[-1])
            elif n == "spares":
                if not a[0].isdigit() or int(a[0]) > 8:
                    raise bad
                pool.spares = int(a[0])
            elif n == "prestart":
                if not a[0].isdigit() or int(a[0]) > 8:
                    raise bad
                pool.prestart = int(a[0])
            elif n == "memory":
                size = values.parse_size(a[0])
                if not size or size < 1024 * 1024:
                    raise bad
                pool.memory_mb = size // (1024 * 1024)
            elif n == "transport":
                if a[0] not in ("auto", "tap", "socketpair"):
                    raise bad
                pool.transport = a[0]
            elif n == "accel":
                if a[0] not in ("auto", "kvm", "tcg"):
                    raise bad
                pool.accel = a[0]
            elif n == "balance":
                pool.balance = self._pool_balance(e)
            elif n == "setting":
                if any(c.isspace() for c in a[1]):
                    # Guest settings travel on the kernel command line, split at spaces.
                    raise bad
                pool.settings[a[0]] = a[1]
                try:
                    Tunables.split({a[0]: a[1]})
                except UnikernelError as exc:
                    raise ConfigError(exc.args[0], f, ln) from exc
        if not pool.image:
            raise ConfigError(f'no "image" is defined in unikernel "{name}"', d.file, d.line)
        self.http.unikernels[name] = pool

    def _pool_balance(self, e: Directive) -> Balance:
        a, f, ln = e.args, e.file, e.line
        if a[0] in ("round_robin", "least_conn") and len(a) == 1:
            return Balance(a[0])
        if a[0] == "hash" and len(a) >= 2:
            if len(a) == 3 and a[2] != "consistent":
                raise ConfigError(f'invalid parameter "{a[2]}"', f, ln)
            values.check_template(a[1], f, ln)
            return Balance("hash", key=a[1], consistent=len(a) == 3)
        if a[0] == "hash":
            raise ConfigError('invalid number of arguments in "balance" directive', f, ln)
        raise ConfigError(f'invalid parameter "{a[0] if len(a) == 1 else a[1]}"', f, ln)

    def _unikernel_pass(self, d: Directive) -> UnikernelPass:
        payload = d.args[1] if len(d.args) > 1 else "uri"
        if payload not in ("uri", "body", "args") and not (
                payload.startswith("header:") and len(payload) > len("header:")):
            raise ConfigError(f'invalid parameter "{payload}"', d.file, d.line)
        up = UnikernelPass(d.args[0], payload)
        self.pending_unikernel.append((up, d.file, d.line))
        return up

    def _resolve_unikernel_passes(self) -> None:
        for up, f, ln in self.pending_unikernel:
            if up.pool not in self.http.unikernels:
                raise ConfigError(f'host not found in unikernel "{up.pool}"', f, ln)
        for name, part in self.pending_parts:
            compose.check_pool(name, part, self.http.unikernels)
