"""A pool of instances of one service, driven from the event loop: balancing, in-flight limits, queue, retries."""

import asyncio
import collections
import math
import os
import subprocess
import time

from gateway.errors import LaunchFailed, UnikernelError
from gateway.observe.errorlog import log
from gateway.unikernel import qemu, wire
from gateway.unikernel.instance import (
    DRAINING, FAILED, READY, RESTARTING, RETIRED, SPARE, STARTING, STOPPED, Instance)
from gateway.unikernel.link import SocketpairLink, TapLink
from gateway.unikernel.pool_core import Call, PoolCore, fail_call
from gateway.unikernel.prestart import PausedQemu
from gateway.unikernel.supervisor import Supervisor

__all__ = ["Call", "Pool"]     # Call: the twin pool_core selected (compiled or not)

# Booting instances are pinged this often until they answer: a ping is one frame, and every interval
# waited after the guest is ready is added to boot and restart times.
BOOT_PING_INTERVAL = 0.002
# Ready instances are pinged in this many phases of the ping interval.
PING_PHASES = 8
# Tap names are "uk<pid hex>p<pool>l<link>": at most 2 + 6 + 1 + 2 + 1 + 3 = 15 bytes (IFNAMSIZ is 16).
# Links are numbered apart from instances: a link goes with the QEMU wired to it, and an instance that
# resumes a paused QEMU (prestart.py) takes that QEMU's link.
MAX_INDEX = 99
MAX_LINK = 255


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
        self.paused = []            # PausedQemu asked of the supervisor and not yet taken by an instance
        self._prestarting = False   # paused QEMUs are kept once the pool and its spares are up
        self._free_links = []       # links left by an instance that took a paused QEMU's: the next paused one's
        self._link_numbers = set()

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
        with them for the CPU while the gateway starts; the paused QEMUs (`prestart N`) follow them."""
        for _ in range(self.config.spares):
            self.add_instance(spare=True)
        self._prestarting = True
        self._prestart()

    def _prestart(self):
        # Paused QEMUs start once nothing boots, so they do not take CPU from an instance on its way up.
        if self.closed or not self._prestarting or len(self.paused) >= self.config.prestart or \
                any(i.state == STARTING for i in self.instances):
            return
        while len(self.paused) < self.config.prestart:
            try:
                link = self._free_links.pop() if self._free_links else self._new_link()
            except UnikernelError as exc:
                log.error(f'unikernel "{self.name}": cannot start a paused QEMU: {exc}')
                self._prestarting = False
                return
            paused = PausedQemu(link, os.path.join(self.log_dir, f"{self.name}-paused.{os.getpid()}.stderr"))
            self.paused.append(paused)
            self.supervisor.prestart(paused)
        self._changed()

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
        for link in [p.link for p in self.paused] + self._free_links:
            self._close_link(link)
        self.paused.clear()
        self._free_links.clear()
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
        link = self._free_links.pop() if self._free_links else self._new_link()
        stem = f"{self.name}-{index}.{os.getpid()}"
        console = os.path.join(self.log_dir, stem + ".console")
        inst = Instance(self.name, index, link, link.guest_mac, self.qemu_argv(link, console), console,
                        os.path.join(self.log_dir, stem + ".stderr"), self.accel)
        inst.spare = spare
        self.instances.append(inst)
        self._by_name[inst.name] = inst
        self.loop.add_reader(inst.fd, self._readable, inst)
        self.supervisor.add(inst)
        self._changed()
        return inst

    def qemu_argv(self, link, console, monitor_fd=None):
        """QEMU's command line on link (pure: the supervisor thread calls it too). The guest's id= is
        the link's number; monitor_fd starts it paused (prestart.py), its console then set at resume."""
        append = " ".join([f"id={link.number}"] + [f"{k}={v}" for k, v in self.guest_settings.items()])
        return qemu.build_argv(self.image, memory_mb=self.config.memory_mb, accel=self.accel,
                               netdev_args=link.netdev_args(), serial_log=console, append=append,
                               mac=link.guest_mac, qemu=self.qemu_path, keep_log=True, monitor_fd=monitor_fd)

    def _new_link(self):
        number = next((n for n in range(MAX_LINK + 1) if n not in self._link_numbers), None)
        if number is None:
            raise LaunchFailed(f'unikernel "{self.name}": no free link number')
        if self.transport == "tap":
            link = TapLink(f"uk{os.getpid():x}p{self.number}l{number}", self.host_mac)
        else:
            link = SocketpairLink(self.host_mac)
        # The guest's MAC goes with the link: what is sent on a link is addressed to the QEMU wired to it.
        link.number = number
        link.guest_mac = f"52:54:00:{self.number:02x}:{number:02x}:01"
        self._link_numbers.add(number)
        return link

    def _close_link(self, link):
        link.close()
        self._link_numbers.discard(link.number)
        tap = getattr(link, "name", None)
        if tap and os.path.exists(f"/sys/class/net/{tap}"):
            # Normally gone with its last fd; a QEMU we could not reap may still hold it.
            subprocess.run(["ip", "link", "delete", tap], capture_output=True, timeout=2)

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
                "spares": self.config.spares, "instances": [i.snapshot() for i in self.instances],
                "prestart": self.config.prestart, "paused": [p.snapshot() for p in self.paused]}

    # Events from the supervisor thread (delivered by call_soon_threadsafe) ----

    def spawned(self, inst, generation, paused=None):
        """A QEMU process was started for inst, or (paused) a paused QEMU was resumed for it."""
        if self.closed:
            return      # stop() closed every link, the paused ones too
        if paused is not None:
            self._take_link(inst, paused)
        if inst.generation != generation or inst.state in (DRAINING, RETIRED):
            return
        inst.state = STARTING
        inst.boot_ping_from = self.next_id()
        inst.spawned_at = self.loop.time()
        how = "resumed a paused QEMU" if paused is not None else "started"
        log.info(f'unikernel "{inst.name}" {how}, pid {inst.pid}, accelerator {self.accel}, '
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
        self._prestart()

    def _take_link(self, inst, paused):
        # The resumed QEMU is wired to the paused one's link: from now on it is inst's. inst's old link
        # (its QEMU has exited, or none was ever started on it) waits for the next paused QEMU.
        self.paused.remove(paused)
        old = inst.link
        self.loop.remove_reader(inst.fd)
        if inst.writing:
            inst.writing = False
            self.loop.remove_writer(inst.fd)
        inst.outbox.clear()
        inst.link = paused.link
        inst.fd = paused.link.fileno()
        inst.guest_mac = wire.parse_mac(paused.link.guest_mac)
        inst.reassembler = wire.Reassembler()
        self.loop.add_reader(inst.fd, self._readable, inst)
        while old.recv() is not None:
            pass            # the old QEMU's last replies: nobody waits for them
        self._free_links.append(old)
        self._changed()

    def paused_changed(self, paused):
        """A paused QEMU started, finished loading, or exited (the supervisor starts another)."""
        if not self.closed:
            self._changed()

    def paused_failed(self, paused):
        """A paused QEMU crash-looped: the pool keeps none from now on (its instances start QEMU)."""
        if self.closed or paused not in self.paused:
            return
        self.paused.remove(paused)
        self._close_link(paused.link)
        self._prestarting = False
        self._changed()

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
            self._prestart()

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
        self._close_link(inst.link)
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
