"""The unikernel pools of one gateway worker process: started with the worker, stopped with it.

With `worker_processes N` every worker has its own pools, instances, supervisor threads and taps (named
uk<worker pid hex>p<pool>i<index>). Each worker writes the state of its instances to
PREFIX/logs/unikernel/status.<worker pid>.json whenever one changes; consoles are kept beside it.
"""

import asyncio
import json
import os
from pathlib import Path

from gateway.errors import LaunchFailed, UnikernelError
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log
from gateway.unikernel import qemu
from gateway.unikernel.autoscaler import Autoscaler
from gateway.unikernel.dispatch import SERVICES, UnikernelExchange
from gateway.unikernel.pool import Pool
from gateway.unikernel.tunables import Tunables
from gateway.unikernel.wire import Op

_CAP_NET_ADMIN = 12


def has_net_admin():
    """Whether this process may create taps (CAP_NET_ADMIN in its effective set)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def choose_transport(requested):
    """('tap' | 'socketpair', why) for a pool's `transport` value; LaunchFailed if tap is impossible."""
    able = has_net_admin() and os.path.exists("/dev/net/tun")
    if requested == "tap" and not able:
        raise LaunchFailed("transport tap needs CAP_NET_ADMIN and /dev/net/tun: run as root or use "
                           "transport socketpair")
    if requested in ("tap", "socketpair"):
        return requested, "configured"
    return ("tap", "CAP_NET_ADMIN available") if able else ("socketpair", "no CAP_NET_ADMIN")


# Services whose `setting key <hex>` is a secret, and the operation that hands it over after boot.
_KEY_OPS = {"auth": Op.AUTH_SETKEY, "webhook": Op.WEBHOOK_SETKEY}


def _secret(service, guest):
    """(op, key) for a keyed service, taken out of the guest's command line; None otherwise."""
    op = _KEY_OPS.get(service)
    if op is None or "key" not in guest:
        return None
    try:
        key = bytes.fromhex(guest.pop("key"))
    except ValueError:
        raise LaunchFailed('"setting key" must be hexadecimal') from None
    if not 1 <= len(key) <= 256:
        raise LaunchFailed('"setting key" must be 1 to 256 bytes')
    return op, key


def host_mac():
    """Our source MAC on every link: unique per worker process, so processes sharing nothing get no copies."""
    pid = os.getpid()
    return "02:%02x:%02x:%02x:%02x:01" % (pid >> 24 & 255, pid >> 16 & 255, pid >> 8 & 255, pid & 255)


class UnikernelPools:
    """Every `unikernel` block of the config, as running pools of this worker process."""

    def __init__(self, configs, loop, prefix):
        self.configs = configs
        self.loop = loop
        self.log_dir = os.path.join(prefix, "logs", "unikernel")
        self.pools = {}
        self.services = {}
        self.keys = {}
        self.autoscalers = []
        self.status_path = None
        for name, config in configs.items():
            key = config.balance.key if config.balance.method == "hash" else None
            self.keys[name] = compile_template(key, config.file, config.line) if key else None

    async def start(self):
        """Launch MIN instances of each pool; UnikernelError (one sentence) when that cannot work."""
        qemu_path = qemu.check_qemu()
        try:
            os.makedirs(self.log_dir, exist_ok=True)
        except OSError as exc:
            raise LaunchFailed(f'cannot create "{self.log_dir}": {exc.strerror}') from exc
        self.status_path = os.path.join(self.log_dir, f"status.{os.getpid()}.json")
        mac = host_mac()
        try:
            for number, (name, config) in enumerate(self.configs.items()):
                self.pools[name] = self._pool(name, config, number, qemu_path, mac)
            for pool in self.pools.values():
                pool.start()
        except UnikernelError:
            self.stop()
            raise
        boot = max(p.tunables.boot_timeout for p in self.pools.values())
        counts = await asyncio.gather(*(p.wait_booted(boot) for p in self.pools.values()))
        for pool, ready in zip(self.pools.values(), counts):
            if ready < pool.config.min_instances:
                log.warn(f'unikernel "{pool.name}": {ready} of {pool.config.min_instances} instances ready')
            scaler = Autoscaler(pool, self.loop)
            scaler.start()
            self.autoscalers.append(scaler)
        self.write_status()

    def _pool(self, name, config, number, qemu_path, mac):
        try:
            image = qemu.find_image(config.image)
            service = Path(image).stem
            if service not in SERVICES:
                raise LaunchFailed(f'unknown service "{service}": the gateway speaks to '
                                   f'{", ".join(SERVICES)}')
            accel = qemu.choose_accel(config.accel)
            tunables, guest = Tunables.split(config.settings)
            secret = _secret(service, guest)
            transport, why = choose_transport(config.transport)
            if config.max_instances > 100:
                raise LaunchFailed("at most 100 instances per pool")
        except UnikernelError as exc:
            raise type(exc)(f'unikernel "{name}": {exc}') from exc
        log.notice(f'unikernel "{name}": {config.min_instances}-{config.max_instances} instances of {image}, '
                   f"accelerator {accel}, transport {transport} ({why})")
        self.services[name] = SERVICES[service]
        return Pool(config, number, self.loop, transport=transport, accel=accel, image=image,
                    qemu_path=qemu_path, log_dir=self.log_dir, tunables=tunables, guest_settings=guest,
                    host_mac=mac, on_change=self.write_status, secret=secret)

    def stop(self):
        """Stop every QEMU by pid and remove every tap; synchronous and bounded."""
        for scaler in self.autoscalers:
            scaler.stop()
        for pool in self.pools.values():
            pool.stop()
        self.write_status()

    def write_status(self):
        """Write the per-instance state of every pool (atomically) for operators and tests."""
        if self.status_path is None:
            return
        state = {"pid": os.getpid(), "pools": {name: p.snapshot() for name, p in self.pools.items()}}
        tmp = self.status_path + ".tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(state, fh, indent=1)
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.warn(f'cannot write "{self.status_path}": {exc.strerror}')


def make_handler(conn, request, plan, app):
    """The handler answering one request of a location with `unikernel_pass`."""
    pools = app.unikernels
    name = plan.unikernel.pool
    return UnikernelExchange(conn, request, plan, app, pools.pools[name], pools.services[name],
                             pools.keys[name])
