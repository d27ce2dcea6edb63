"""A pool of instances of one service, driven from the event loop: balancing, in-flight limits, queue, retries."""

import asyncio
import collections
import os
import subprocess
import time

from gateway.observe.errorlog import log
from gateway.unikernel import qemu, wire
from gateway.unikernel.instance import (
    DRAINING, FAILED, READY, RESTARTING, RETIRED, STARTING, STOPPED, Instance)
from gateway.unikernel.link import SocketpairLink, TapLink
from gateway.unikernel.supervisor import Supervisor
from gateway.upstream.ring import Ring

# Frames read per readiness callback, so one busy link cannot starve the others.
READ_BATCH = 256
# Booting instances are pinged this often until they answer: a ping is one frame, and every interval
# waited after the guest is ready is added to boot and restart times.
BOOT_PING_INTERVAL = 0.002
# Keys whose ring owner is remembered until the ring changes.
OWNER_CACHE = 4096
# Tap names are "uk<pid hex>p<pool>i<index>": at most 2 + 6 + 1 + 2 + 1 + 2 = 14 bytes (IFNAMSIZ is 16).
MAX_INDEX = 99


class Call:
    """One request to a pool; `owner` gets unikernel_reply(status, payload) or unikernel_failed(status, why)."""

    __slots__ = ("op", "payload", "key", "idempotent", "owner", "nframes", "tries", "instance", "req_id",
                 "sent_at", "done")

    def __init__(self, op, payload, key, idempotent, owner):
        self.op = op
        self.payload = payload
        self.key = key
        self.idempotent = idempotent
        self.owner = owner
        self.nframes = max(1, -(-len(payload) // wire.FRAG_MAX))
        self.tries = 0
        self.instance = None
        self.req_id = 0
        self.sent_at = 0.0
        self.done = False


class _SecretSent:
    """The owner of the call that hands a booted instance its secret."""

    __slots__ = ("pool", "inst", "generation")

    def __init__(self, pool, inst, generation):
        self.pool, self.inst, self.generation = pool, inst, generation

    def unikernel_reply(self, status, payload):
        self.pool._secret_answered(self.inst, self.generation, status)

    def unikernel_failed(self, status, why):
        self.pool._keying.discard(self.inst.name)     # the instance died: its next boot asks again


class Pool:
    """The instances of one `unikernel NAME { }` block in this gateway worker, and the requests for them."""

    def __init__(self, config, number, loop, *, transport, accel, image, qemu_path, log_dir, tunables,
                 guest_settings, host_mac, on_change, secret=None):
        self.config = config
        self.name = config.name
        self.number = number
        self.loop = loop
        self.transport = transport
        self.accel = accel
        self.image = image
        self.qemu_path = qemu_path
        self.log_dir = log_dir
        self.tunables = tunables
        self.guest_settings = guest_settings
        # (op, payload) sent to each instance once it boots, before it takes requests: how a key
        # reaches a guest without appearing on QEMU's command line (readable by any local user).
        self.secret = secret
        self._keying = set()        # instance names booted and waiting for the secret's reply
        self.host_mac = host_mac
        self.on_change = on_change
        self.method = config.balance.method
        self.instances = []
        self.queue = collections.deque()
        self.ids = wire.RequestIds()
        self.supervisor = Supervisor(self.name, loop, tunables, self)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.closed = False
        self._rr = 0
        self._ring = None
        self._ring_names = ()
        self._ready_names = None    # names of READY instances, in order; None until _pick needs them
        self._owners = {}           # key -> instance name on the current ring (a lookup costs ~2.5 us)
        self._by_name = {}
        self._timer = None
        self._timer_due = 0.0
        self._last_ping = 0.0
        self._boot_waiters = []
        self._dirty = []            # instances whose outbox the end of this loop iteration sends
        self._flush_handle = None

    # Lifecycle --------------------------------------------------------------

    def start(self):
        """Create MIN instances (links made here, so a tap problem is raised now) and start the supervisor."""
        for _ in range(self.config.min_instances):
            self.add_instance()
        self.supervisor.start()
        self._timer = self.loop.call_soon(self._tick)
        self._timer_due = self.loop.time()

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

    def add_instance(self):
        """A new instance at the lowest free index (started by the supervisor); None when none is free."""
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
        """Instances that serve or will serve (not failed, not draining)."""
        return [i for i in self.instances if i.state in (STARTING, READY, RESTARTING)]

    def snapshot(self):
        """The pool's state for the status file."""
        return {"transport": self.transport, "accelerator": self.accel, "queued": len(self.queue),
                "min": self.config.min_instances, "max": self.config.max_instances,
                "instances": [i.snapshot() for i in self.instances]}

    # Events from the supervisor thread (delivered by call_soon_threadsafe) ----

    def spawned(self, inst, generation):
        """A QEMU process was started for inst."""
        if self.closed or inst.generation != generation or inst.state in (DRAINING, RETIRED):
            return
        inst.state = STARTING
        inst.boot_ping_from = self.ids.next()
        log.info(f'unikernel "{inst.name}" started, pid {inst.pid}, accelerator {self.accel}, '
                 f"transport {self.transport}")
        self._changed()
        self._reschedule(BOOT_PING_INTERVAL)

    def exited(self, inst, generation, restarting):
        """inst's QEMU exited (or was killed); its requests are retried elsewhere when idempotent."""
        if self.closed:
            return
        if inst.state != DRAINING:
            inst.state = RESTARTING if restarting else FAILED
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
                _fail(call, 502, f'unikernel "{inst.name}" {inst.last_exit}')
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

    # Dispatch -----------------------------------------------------------------

    def submit(self, call):
        """Send call to an instance now, or queue it; fails it at once when nothing can take it."""
        if self.closed:
            _fail(call, 502, f'unikernel "{self.name}" is stopped')
            return
        inst = self._pick(call)
        if inst is not None:
            self._dispatch(inst, call)
        elif not self.active():
            _fail(call, 502, f'no live instance in unikernel "{self.name}"')
        elif len(self.queue) >= self.tunables.queue_limit:
            _fail(call, 503, f'queue of unikernel "{self.name}" is full')
        else:
            self.queue.append(call)

    def cancel(self, call):
        """Forget a call (timed out or its client left); a late reply is ignored."""
        call.done = True
        inst = call.instance
        if inst is not None:
            call.instance = None
            if inst.inflight.pop(call.req_id, None) is not None:
                inst.inflight_frames -= call.nframes
                inst.reassembler.forget(inst.guest_mac, call.req_id)
            self._after_reply(inst)

    def take_latency(self):
        """(mean reply latency in seconds, number of replies) since the last call."""
        count, total = self.latency_count, self.latency_sum
        self.latency_count, self.latency_sum = 0, 0.0
        return (total / count if count else 0.0), count

    def _pick(self, call):
        instances = self.instances
        if self.method == "hash" and call.key is not None:
            ready = self._ready_names
            if ready is None:
                ready = self._ready_names = tuple(i.name for i in instances if i.state == READY)
            if not ready:
                return None
            if ready != self._ring_names:
                self._ring, self._ring_names = Ring(list(ready)), ready
                self._owners = {}
            owner = self._owners.get(call.key)
            if owner is None:
                if len(self._owners) >= OWNER_CACHE:
                    self._owners.clear()
                owner = self._owners[call.key] = self._ring.lookup(call.key)
            # The key's owner or nobody: spilling to another instance would split a key's data.
            inst = self._by_name[owner]
            return inst if inst.has_room(call.nframes, self.tunables) else None
        count = len(instances)
        best = None
        nframes = call.nframes
        tunables = self.tunables
        for step in range(count):
            inst = instances[(self._rr + step) % count]
            # Instance.has_room, inlined: this runs for every request.
            if inst.state != READY or len(inst.inflight) >= tunables.max_inflight or \
                    (inst.inflight and inst.inflight_frames + nframes > tunables.max_inflight_frames):
                continue
            if self.method != "least_conn":
                best = inst
                break
            if best is None or len(inst.inflight) < len(best.inflight):
                best = inst
        if best is not None and count > 1:
            self._rr = (instances.index(best) + 1) % count
        return best

    def _dispatch(self, inst, call):
        rid = self.ids.next()
        call.instance = inst
        call.req_id = rid
        call.sent_at = self.loop.time()
        inst.inflight[rid] = call
        inst.inflight_frames += call.nframes
        self._send(inst, wire.encode(inst.guest_mac, inst.link.mac, rid, call.op, call.payload,
                                     now=int(time.time())))

    def _drain(self):
        queue = self.queue
        if not queue:
            return
        kept = collections.deque()
        while queue:
            call = queue.popleft()
            if call.done:
                continue
            inst = self._pick(call)
            if inst is not None:
                self._dispatch(inst, call)
            elif self.method == "hash":
                kept.append(call)       # another key may still fit elsewhere
            else:
                queue.appendleft(call)  # nothing has room: keep the order
                break
        kept.extend(queue)
        self.queue = kept

    def _fail_queue(self, status, why):
        queue, self.queue = self.queue, collections.deque()
        for call in queue:
            if not call.done:
                _fail(call, status, why)

    # The link -----------------------------------------------------------------

    def _send(self, inst, frames):
        # Frames wait in the instance's outbox until the end of this loop iteration, when one sendmmsg
        # carries all that the iteration's requests queued (invariant: a non-empty outbox is either in
        # _dirty or waiting for writability).
        outbox = inst.outbox
        if not outbox:
            self._dirty.append(inst)
            if self._flush_handle is None:
                self._flush_handle = self.loop.call_soon(self._flush)
        outbox.extend(frames)

    def _flush(self):
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for inst in dirty:
            if inst.outbox and not inst.writing:
                self._push(inst)

    def _push(self, inst):
        outbox = inst.outbox
        if self.closed or inst.state in (RETIRED, STOPPED):
            outbox.clear()
            return
        while outbox:
            try:
                sent = wire.send_frames(inst.fd, outbox)
            except OSError:
                sent = 1    # that frame is dropped (e.g. ENOBUFS on a tap): its request times out or is retried
            if not sent:
                if not inst.writing:
                    inst.writing = True
                    self.loop.add_writer(inst.fd, self._push, inst)
                return
            del outbox[:sent]
        if inst.writing:
            inst.writing = False
            self.loop.remove_writer(inst.fd)

    def _readable(self, inst):
        try:
            messages, malformed, _ = wire.receive(inst.fd, inst.reassembler, READ_BATCH)
        except OSError:
            return
        if malformed:
            inst.malformed += malformed
        inflight = inst.inflight
        replied = False
        now = self.loop.time()
        for msg in messages:
            call = inflight.pop(msg.req_id, None)
            if call is None:
                if msg.op == wire.Op.PING:
                    self._pong(inst, msg.req_id)
                continue
            inst.inflight_frames -= call.nframes
            inst.served += 1
            call.instance = None
            call.done = True
            self.latency_sum += now - call.sent_at
            self.latency_count += 1
            replied = True
            owner, call.owner = call.owner, None     # see _fail
            owner.unikernel_reply(msg.status, msg.payload)
        if replied:
            inst.last_pong = time.monotonic()      # any reply shows the worker is alive
            self._after_reply(inst)

    def _after_reply(self, inst):
        if inst.state == DRAINING and not inst.inflight:
            self.supervisor.retire(inst)
        if self.queue:
            self._drain()

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
            inst.state = READY
            log.info(f'unikernel "{inst.name}" ready (pid {inst.pid})')
            self._changed()
            self._wake_boot_waiters()
            self._drain()

    # Health pings -------------------------------------------------------------

    def _tick(self):
        self._timer = None
        if self.closed:
            return
        now = time.monotonic()
        ping_ready = now - self._last_ping >= self.tunables.ping_interval
        if ping_ready:
            self._last_ping = now
        booting = False
        for inst in self.instances:
            if inst.state == STARTING:
                booting = True
            elif not (ping_ready and inst.state in (READY, DRAINING)):
                continue
            self._send(inst, wire.encode(inst.guest_mac, inst.link.mac, self.ids.next(), wire.Op.PING))
        self._reschedule(BOOT_PING_INTERVAL if booting else self.tunables.ping_interval)

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



def _fail(call, status, why):
    """Give a call its one answer, a failure."""
    call.done = True
    # An owner usually holds its Call (to cancel it): dropping the Call's reference to its owner once it is
    # answered lets reference counting free both at once, instead of leaving a cycle to the collector.
    owner, call.owner = call.owner, None
    owner.unikernel_failed(status, why)
