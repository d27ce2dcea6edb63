"""A pool's per-request path, the base class of Pool: submit, pick an instance, send frames, read replies.

Everything a request touches between its handler and the link lives here; the lifecycle (boot, health
pings, restarts, spares) stays in pool.py. _fastpath/ukpath.pyx compiles this module (same names, same
results); this pure-Python class is its specification and runs under GATEWAY_NO_EXTENSIONS=1.
"""

import collections
import time

from gateway._select import load_fast
from gateway.unikernel import wire
from gateway.unikernel.instance import DRAINING, READY, RETIRED, STOPPED
from gateway.upstream.ring import Ring

# Frames read per readiness callback, so one busy link cannot starve the others.
READ_BATCH = 256
# Keys whose ring owner is remembered until the ring changes.
OWNER_CACHE = 4096


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


class PoolCore:
    """The request path of one pool; Pool (pool.py) adds the instances' lifecycle.

    Pool calls `_core_init` first; the rest of the pool reaches these attributes by name. Hooks it
    provides: active(), _pong(inst, req_id), supervisor.retire(inst).
    """

    def _core_init(self, name, loop, tunables, method):
        self.name = name
        self.loop = loop
        self.tunables = tunables
        self.method = method
        self.instances = []
        self.queue = collections.deque()
        self.closed = False
        self.latency_sum = 0.0
        self.latency_count = 0
        self._next_id = 1
        self._direct_ms = 0         # the millisecond of the last request sent at once (_dispatch)
        self._rr = 0
        self._ring = None
        self._ring_names = ()
        self._ready_names = None    # names of READY instances, in order; None until _pick needs them
        self._owners = {}           # key -> instance name on the current ring (a lookup costs ~2.5 us)
        self._by_name = {}
        self._dirty = []            # instances whose outbox the end of this loop iteration sends
        self._flush_handle = None

    def next_id(self):
        """The next request id: 32-bit, increasing, never 0, wrapping (one sequence per pool)."""
        rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        return rid

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
        now_ms = int(time.monotonic() * 1000)
        direct = now_ms != self._direct_ms and not inst.inflight and not inst.outbox and not inst.writing
        rid = self.next_id()
        call.instance = inst
        call.req_id = rid
        call.sent_at = self.loop.time()
        inst.inflight[rid] = call
        inst.inflight_frames += call.nframes
        frames = wire.encode(inst.guest_mac, inst.host_mac, rid, call.op, call.payload, now=int(time.time()))
        if direct:
            # An idle instance has nothing to batch this request with: it goes now, not at the end of the
            # loop iteration. At most once a millisecond per pool: under load, when an instance empties
            # between iterations, the next iteration's requests still leave in one sendmmsg.
            self._direct_ms = now_ms
            inst.outbox.extend(frames)
            self._push(inst)
        else:
            self._send(inst, frames)

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


def _fail(call, status, why):
    """Give a call its one answer, a failure."""
    call.done = True
    # An owner usually holds its Call (to cancel it): dropping the Call's reference to its owner once it is
    # answered lets reference counting free both at once, instead of leaving a cycle to the collector.
    owner, call.owner = call.owner, None
    owner.unikernel_failed(status, why)


fail_call = _fail
PY_CALL, PY_POOL_CORE, PY_FAIL_CALL = Call, PoolCore, _fail
FAST = load_fast("ukpath")
if FAST is not None:
    Call, PoolCore, fail_call = FAST.Call, FAST.PoolCore, FAST.fail_call
IMPLEMENTATION = "compiled" if FAST is not None else "python"
