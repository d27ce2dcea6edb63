"""The unikernel pools of one gateway worker process: started with the worker, stopped with it.

With `worker_processes N` every worker has its own pools, instances, paused QEMUs, supervisor threads and
taps (named uk<worker pid hex>p<pool>l<link>). Each worker writes the state of its instances to
PREFIX/logs/unikernel/status.<worker pid>.json whenever one changes; consoles are kept beside it.
Each worker boots its instances from its own copy of each image, so a pool never mixes versions.
"""

import asyncio
import os
import shutil
from pathlib import Path

import orjson

from gateway.errors import ImageNotFound, LaunchFailed, UnikernelError
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log
from gateway.unikernel import dispatch, image_copies, qemu
from gateway.unikernel.autoscaler import Autoscaler
from gateway.unikernel.dispatch import SERVICES
from gateway.unikernel.pool import Pool
from gateway.unikernel.tunables import Tunables
from gateway.unikernel.wire import Op

# How often the status file is rewritten when only the served counts changed (seconds).
STATUS_REFRESH = 1.0
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
        self.services = {}             # pool name -> its service's name (a key of dispatch.SERVICES)
        self.keys = {}
        self.autoscalers = []
        self.status_path = None
        self.image_dir = None           # private copies of the images (see _private_copy)
        self._refresh = None
        self._served_written = 0
        self._launched = False
        for name, config in configs.items():
            key = config.balance.key if config.balance.method == "hash" else None
            self.keys[name] = compile_template(key, config.file, config.line) if key else None

    def launch(self):
        """Create the pools and spawn their MIN instances, without waiting for them to boot; UnikernelError
        (one sentence) when that cannot work. Called early, so QEMU boots while the worker builds the rest."""
        if self._launched:
            return
        self._launched = True
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

    async def start(self):
        """Launch MIN instances of each pool (unless launch() did) and wait for them to boot; then the spares
        and the autoscalers. UnikernelError (one sentence) when the pools cannot start."""
        self.launch()
        boot = max(p.tunables.boot_timeout for p in self.pools.values())
        counts = await asyncio.gather(*(p.wait_booted(boot) for p in self.pools.values()))
        for pool, ready in zip(self.pools.values(), counts):
            if ready < pool.config.min_instances:
                log.warn(f'unikernel "{pool.name}": {ready} of {pool.config.min_instances} instances ready')
            pool.add_spares()
            scaler = Autoscaler(pool, self.loop)
            scaler.start()
            self.autoscalers.append(scaler)
        self.write_status()
        self._refresh = self.loop.call_later(STATUS_REFRESH, self._refresh_status)

    def _refresh_status(self):
        # State changes are written at once; the served counts, at most once a refresh period.
        served = sum(i.served for p in self.pools.values() for i in p.instances)
        if served != self._served_written:
            self._served_written = served
            self.write_status()
        self._refresh = self.loop.call_later(STATUS_REFRESH, self._refresh_status)

    def _private_copy(self, name, image):
        """This worker's own copy of a pool's image, which its instances boot, restarts included.

        Instances are immutable: an image rebuilt in place reaches new worker processes (a
        reload) and never a running pool, which would otherwise restart a crashed instance
        from the new file beside instances of the old one.
        """
        if self.image_dir is None:
            self.image_dir = image_copies.make_dir()
        folder = os.path.join(self.image_dir, name)
        os.makedirs(folder, exist_ok=True)
        copy = os.path.join(folder, Path(image).name)
        try:
            shutil.copyfile(image, copy)
        except OSError as exc:
            raise ImageNotFound(f'cannot copy "{image}": {exc.strerror}') from exc
        return copy

    def _pool(self, name, config, number, qemu_path, mac):
        try:
            image = qemu.find_image(config.image)
            running = self._private_copy(name, image)
            service = Path(image).stem
            if service not in SERVICES:
                raise LaunchFailed(f'unknown service "{service}": the gateway speaks to '
                                   f'{", ".join(SERVICES)}')
            accel = qemu.choose_accel(config.accel)
            tunables, guest = Tunables.split(config.settings)
            secret = _secret(service, guest)
            transport, why = choose_transport(config.transport)
            if config.max_instances + config.spares > 100:
                raise LaunchFailed("at most 100 instances per pool, spares included")
        except UnikernelError as exc:
            raise type(exc)(f'unikernel "{name}": {exc}') from exc
        spares = f" and {config.spares} spare{'s' if config.spares > 1 else ''}" if config.spares else ""
        log.notice(f'unikernel "{name}": {config.min_instances}-{config.max_instances} instances{spares} '
                   f"of {image}, accelerator {accel}, transport {transport} ({why})")
        self.services[name] = service
        return Pool(config, number, self.loop, transport=transport, accel=accel, image=running,
                    qemu_path=qemu_path, log_dir=self.log_dir, tunables=tunables, guest_settings=guest,
                    host_mac=mac, on_change=self.write_status, secret=secret)

    def stop(self):
        """Stop every QEMU by pid and remove every tap; synchronous and bounded."""
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        for scaler in self.autoscalers:
            scaler.stop()
        for pool in self.pools.values():
            pool.stop()
        self.write_status()
        if self.image_dir is not None:
            shutil.rmtree(self.image_dir, ignore_errors=True)
            self.image_dir = None

    def write_status(self):
        """Write the per-instance state of every pool (atomically) for operators and tests."""
        if self.status_path is None:
            return
        state = {"pid": os.getpid(), "pools": {name: p.snapshot() for name, p in self.pools.items()}}
        tmp = self.status_path + ".tmp"
        try:
            with open(tmp, "wb") as fh:
                # Not json.dump: its streaming encoder leaves a cycle of closures per call, which
                # under load piles up until the worker's rare young collection (bench/soak.py).
                fh.write(orjson.dumps(state, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.warn(f'cannot write "{self.status_path}": {exc.strerror}')


def make_handler(conn, request, plan, app):
    """The handler answering one request of a location with `unikernel_pass`, not started (a composed
    location's; the others are answered by dispatch.start_exchange)."""
    pools = app.unikernels
    name = plan.unikernel.pool
    return dispatch.UnikernelExchange(conn, request, plan, app, pools.pools[name], pools.services[name],
                                      pools.keys[name])
