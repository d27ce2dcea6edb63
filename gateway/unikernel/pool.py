"""A pool of instances of one service, driven from the event loop: balancing, in-flight limits, queue, retries."""

import asyncio
import collections
import math
import os
import subprocess
import time

from gateway.observe.errorlog import log
from gateway.unikernel import qemu, wire
from gateway.unikernel.instance import (
    DRAINING, FAILED, READY, RESTARTING, RETIRED, SPARE, STARTING, STOPPED, Instance)
from gateway.unikernel.link import SocketpairLink, TapLink
from gateway.unikernel.pool_core import Call, PoolCore, fail_call
from gateway.unikernel.supervisor import Supervisor

__all__ = ["Call", "Pool"]     # Call: the twin pool_core selected (compiled or not)

# Booting instances are pinged this often until they answer: a ping is one frame, and every interval
# waited after the guest is ready is added to boot and restart times.
BOOT_PING_INTERVAL = 0.002
# Ready instances are pinged in this many phases of the ping interval.
PING_PHASES = 8
# Tap names are "uk<pid hex>p<pool>i<index>": at most 2 + 6 + 1 + 2 + 1 + 2 = 14 bytes (IFNAMSIZ is 16).
MAX_INDEX = 99


class _SecretSent:
    """The owner of the call that hands a booted instance its secret."""

    __slots__ = ("pool", "inst", "generation")

    def __init__(self, pool, inst, generation):
        self.pool, self.inst, self.generation = pool, inst, generation

    def unikernel_reply(self, status, payload):
        self.pool._secret_answered(self.inst, self.generation, status)

    def unikernel_failed(self, status, why):
        self.pool._keying.discard(self.inst.name)     # the instance died: its next boot asks again


class Pool(PoolCore):
    """The instances of one `unikernel NAME { }` block in this gateway worker, and the requests for them."""

    def __init__(self, config, number, loop, *, transport, accel, image, qemu_path, log_dir, tunables,
                 guest_settings, host_mac, on_change, secret=None):
        self._core_init(config.name, loop, tunables, config.balance.method)
        self.config = config
        self.number = number
        self.transport = transport
        self.accel = accel
        self.image = image
        self.qemu_path = qemu_path
        self.log_dir = log_dir
        self.guest_settings = guest_settings
        # (op, payload) sent to each instance once it boots, before it takes requests: how a key
        # reaches a guest without appearing on QEMU's command line (readable by any local user).
        self.secret = secret
        self._keying = set()        # instance names booted and waiting for the secret's reply
        self.host_mac = host_mac
        self.on_change = on_change
        self.supervisor = Supervisor(self.name, loop, tunables, self)
        self.boot_times = []        # seconds from QEMU start to ready, not yet published
        self._timer = None
        self._timer_due = 0.0
        self._phase = 0
        self._ping_epoch = time.monotonic()
        self._boot_waiters = []

    # Lifecycle --------------------------------------------------------------

    def start(self):
        """Create MIN instances (links made here, so a tap problem is raised now) and start the supervisor."""
        for _ in range(self.config.min_instances):
            self.add_instance()
        self.supervisor.start()
        self.supervisor.sync()      # QEMU is spawned now, not once this thread lets go of the GIL
        self._timer = self.loop.call_soon(self._tick)
        self._timer_due = self.loop.time()

    def add_spares(self):
        """Boot the spares (`spares N`): once the serving instances are up, so they do not compete
        with them for the CPU while the gateway starts."""
        for _ in range(self.config.spares):
            self.add_instance(spare=True)

    async def wait_booted(self, timeout):
        """Wait until no instance is starting (or timeout); the number ready."""
        if any(i.state in (STARTING, RESTARTING) for i in self.instances):
            waiter = self.loop.create_future()
            self._boot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                pass
        return sum(i.state == READY for i in self.instances)

    def stop(self):
        """Kill every QEMU (by pid, via the supervisor), close links, remove taps; synchronous and bounded."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.supervisor.shutdown()
        for inst in list(self.instances):
            self._forget(inst)
        for call in self.queue:
            call.done = True
        self.queue.clear()

    def add_instance(self, spare=False):
        """A new instance at the lowest free index (started by the supervisor); None when none is free.
        A spare one stands by once booted (see promote_spare)."""
        used = {i.index for i in self.instances}
        index = next((n for n in range(MAX_INDEX + 1) if n not in used), None)
        if index is None:
            return None
        if self.transport == "tap":
            link = TapLink(f"uk{os.getpid():x}p{self.number}i{index}", self.host_mac)
        else:
            link = SocketpairLink(self.host_mac)
        guest_mac = f"52:54:00:{self.number:02x}:{index:02x}:01"
        stem = f"{self.name}-{index}.{os.getpid()}"
        console = os.path.join(self.log_dir, stem + ".console")
        append = " ".join([f"id={index}"] + [f"{k}={v}" for k, v in self.guest_settings.items()])
        argv = qemu.build_argv(self.image, memory_mb=self.config.memory_mb, accel=self.accel,
                               netdev_args=link.netdev_args(), serial_log=console, append=append,
                               mac=guest_mac, qemu=self.qemu_path, keep_log=True)
        inst = Instance(self.name, index, link, guest_mac, argv, console,
                        os.path.join(self.log_dir, stem + ".stderr"), self.accel)
        inst.spare = spare
        self.instances.append(inst)
        self._by_name[inst.name] = inst
        self.loop.add_reader(inst.fd, self._readable, inst)
        self.supervisor.add(inst)
        self._changed()
        return inst

    def retire_instance(self, inst):
        """Take an instance out of rotation; it is stopped once its requests are answered."""
        inst.state = DRAINING
        self._changed()
        if not inst.inflight:
            self.supervisor.retire(inst)

    def active(self):
        """Instances that serve or will serve (not failed, not draining, not spares)."""
        return [i for i in self.instances if i.state in (STARTING, READY, RESTARTING) and not i.spare]

    def promote_spare(self, leaving=None):
        """Put a booted spare in service at once; the instance it stands in for (`leaving`, which
        exited) becomes the spare when it is back. The spare, or None when none is booted."""
        spare = next((i for i in self.instances if i.state == SPARE), None)
        if spare is None:
            return None
        spare.spare = False
        spare.state = READY
        if leaving is not None:
            leaving.spare = True
            log.notice(f'unikernel "{spare.name}" (pid {spare.pid}) takes over from "{leaving.name}"')
        self._changed()
        return spare

    def snapshot(self):
        """The pool's state for the status file."""
        return {"transport": self.transport, "accelerator": self.accel, "queued": len(self.queue),
                "min": self.config.min_instances, "max": self.config.max_instances,
                "spares": self.config.spares, "instances": [i.snapshot() for i in self.instances]}

    # Events from the supervisor thread (delivered by call_soon_threadsafe) ----

    def spawned(self, inst, generation):
        """A QEMU process was started for inst."""
        if self.closed or inst.generation != generation or inst.state in (DRAINING, RETIRED):
            return
        inst.state = STARTING
        inst.boot_ping_from = self.next_id()
        inst.spawned_at = self.loop.time()
        log.info(f'unikernel "{inst.name}" started, pid {inst.pid}, accelerator {self.accel}, '
                 f"transport {self.transport}")
        self._changed()
        self._reschedule(BOOT_PING_INTERVAL)

    def exited(self, inst, generation, restarting):
        """inst's QEMU exited (or was killed); its requests are retried elsewhere when idempotent."""
        if self.closed:
            return
        was_serving = inst.state == READY
        if inst.state != DRAINING:
            inst.state = RESTARTING if restarting else FAILED
        if was_serving:
            self.promote_spare(inst)     # before the retries below, so they can go to it
        calls = list(inst.inflight.values())
        inst.inflight.clear()
        inst.inflight_frames = 0
        inst.outbox.clear()
        if inst.writing:
            inst.writing = False
            self.loop.remove_writer(inst.fd)
        inst.reassembler = wire.Reassembler()
        self._changed()
        for call in calls:
            call.instance = None
            if call.idempotent and call.tries < self.tunables.retries:
                call.tries += 1
                self.submit(call)
            else:
                fail_call(call, 502, f'unikernel "{inst.name}" {inst.last_exit}')
        if inst.state == DRAINING:
            self.supervisor.retire(inst)
        if not self.active():
            self._fail_queue(502, f'no live instance in unikernel "{self.name}"')
        self._drain()
        self._wake_boot_waiters()

    def retired(self, inst):
        """The supervisor stopped a drained instance: close its link for good."""
        if not self.closed:
            self._forget(inst)
            log.notice(f'unikernel "{inst.name}" retired')
            self._changed()

    def log(self, level, message):
        """A log line from the supervisor thread."""
        log.log(level, message)

    # Dispatch (the request path is in pool_core.py) ----------------------------------

    def _fail_queue(self, status, why):
        queue, self.queue = self.queue, collections.deque()
        for call in queue:
            if not call.done:
                fail_call(call, status, why)

    # Replies the request path passes on (pool_core.py) --------------------------

    def _pong(self, inst, req_id):
        inst.last_pong = time.monotonic()
        # Pongs to pings sent before this QEMU started (still queued on the link) prove nothing.
        if inst.state == STARTING and req_id > inst.boot_ping_from:
            if self.secret is not None:
                self._send_secret(inst)
                return
            self._mark_ready(inst)

    def _send_secret(self, inst):
        if inst.name in self._keying:
            return
        self._keying.add(inst.name)
        op, payload = self.secret
        self._dispatch(inst, Call(op, payload, None, False, _SecretSent(self, inst, inst.generation)))

    def _secret_answered(self, inst, generation, status):
        self._keying.discard(inst.name)
        if inst.generation != generation or inst.state != STARTING or self.closed:
            return
        if status != wire.Status.OK:
            log.error(f'unikernel "{inst.name}" refused its key (status {status})')
        self._mark_ready(inst)

    def _mark_ready(self, inst):
        if inst.state == STARTING:
            inst.state = SPARE if inst.spare else READY
            # Its pings fall on one of PING_PHASES instants of each interval, shared by the pool, so
            # the pool's pings spread out while its timer wakes at most PING_PHASES times an interval.
            self._phase = (self._phase + 1) % PING_PHASES
            interval = self.tunables.ping_interval
            offset = self._ping_epoch + interval * self._phase / PING_PHASES
            inst.ping_due = offset + interval * (math.floor((time.monotonic() - offset) / interval) + 1)
            if len(self.boot_times) < 1000:     # taken by gateway/observe/metrics.py
                self.boot_times.append(self.loop.time() - inst.spawned_at)
            log.info(f'unikernel "{inst.name}" {inst.state} (pid {inst.pid})')
            self._changed()
            self._wake_boot_waiters()
            self._drain()

    # Health pings -------------------------------------------------------------

    def _tick(self):
        self._timer = None
        if self.closed:
            return
        now = time.monotonic()
        interval = self.tunables.ping_interval
        booting = False
        next_due = now + interval
        for inst in self.instances:
            if inst.state == STARTING:
                booting = True
            elif inst.state not in (READY, SPARE, DRAINING):
                continue
            else:
                if now < inst.ping_due:
                    next_due = min(next_due, inst.ping_due)
                    continue
                # Each instance keeps its own phase, so a large pool's pings (and the QEMU wake-ups
                # they cost) are spread over the interval instead of all landing at once.
                inst.ping_due += interval
                if inst.ping_due <= now:
                    inst.ping_due = now + interval
                next_due = min(next_due, inst.ping_due)
                if now - inst.last_pong < interval:
                    continue        # it answered lately: that was its health check
            self._send(inst, wire.encode(inst.guest_mac, inst.link.mac, self.next_id(), wire.Op.PING))
        self._reschedule(BOOT_PING_INTERVAL if booting else max(0.001, next_due - now))

    def _reschedule(self, delay):
        if self.closed:
            return
        due = self.loop.time() + delay
        if self._timer is not None:
            # Our own due time: call_soon's handle (the first tick) has no when().
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._tick)
        self._timer_due = due

    # Helpers --------------------------------------------------------------------

    def _forget(self, inst):
        inst.state = STOPPED if self.closed else RETIRED
        fd = inst.fd
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        inst.writing = False
        inst.outbox.clear()
        inst.link.close()
        tap = getattr(inst.link, "name", None)
        if tap and os.path.exists(f"/sys/class/net/{tap}"):
            # Normally gone with its last fd; a QEMU we could not reap may still hold it.
            subprocess.run(["ip", "link", "delete", tap], capture_output=True, timeout=2)
        if inst in self.instances and not self.closed:
            self.instances.remove(inst)
            self._by_name.pop(inst.name, None)

    def _changed(self):
        # Every change of an instance's state or of the instance list comes through here.
        self._ready_names = None
        self.on_change()

    def _wake_boot_waiters(self):
        if any(i.state in (STARTING, RESTARTING) for i in self.instances):
            return
        waiters, self._boot_waiters = self._boot_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
