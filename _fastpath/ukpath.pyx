# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of the unikernel request path: a request's exchange, its service, its pool.

The specification is gateway/unikernel/pool_core.py (Call, PoolCore, fail_call) and
gateway/unikernel/dispatch.py (UnikernelExchange, start_exchange; the services' builders and readers are
compiled in _fastpath/ukservices.pyx): same names, same results, same bytes to the guest and to the client.
What differs is only how: extension types with C fields, C-level calls between exchange, services, pool
and wire (_fastpath/ukservices.pxd, wire.pxd),
the route of a plan looked up once, the clock read in C, and the client response written by the
compiled connection (_fastpath/proxyproto.pyx's send_simple / send_error).
"""

import collections

from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.time cimport time as c_time

from _fastpath.clock cimport is_native_clock, monotonic

from _fastpath.proxyproto cimport conn_body_pending, conn_send_simple, conn_set_handler
from _fastpath.ukservices cimport SVC_ECHO, build, part_kind, part_of, read, service_code, uri_prefix
from _fastpath.ukservices import build_request, read_reply
from _fastpath.wire cimport Message, Reassembler, encode_frames, receive_into, send_list

from gateway.errors import ServiceRefused
from gateway.http.responses import error_page, padded
from gateway.observe.errorlog import log
from gateway.upstream.ring import Ring

__all__ = ["Call", "PoolCore", "fail_call", "UnikernelExchange", "start_exchange", "build_request",
           "read_reply"]

# As in gateway/unikernel/instance.py and wire.py.
cdef str READY = "ready"
cdef str DRAINING = "draining"
cdef str RETIRED = "retired"
cdef str STOPPED = "stopped"
DEF FRAG_MAX = 1476
DEF MAX_PAYLOAD = 1048576
DEF OP_PING = 0x01
DEF READ_BATCH = 256
DEF OWNER_CACHE = 4096
DEF OP_ECHO = 0x10
DEF ST_OK = 0
cdef bytes OCTETS = b"application/octet-stream"
cdef bytes NO_EXTRA = b""

cdef enum:
    PICK_ROUND_ROBIN = 0
    PICK_LEAST_CONN
    PICK_HASH


cdef dict _native_clocks = {}      # loop class -> whether clock.is_native_clock


cdef class Call:
    """One request to a pool; `owner` gets unikernel_reply(status, payload) or unikernel_failed(status, why)."""

    cdef public object op, payload, key, owner, instance
    cdef public bint idempotent, done
    cdef public long nframes, tries
    cdef public unsigned int req_id
    cdef public double sent_at

    def __init__(self, op, payload, key, idempotent, owner):
        self.op = op
        self.payload = payload
        self.key = key
        self.idempotent = idempotent
        self.owner = owner
        self.nframes = max(1, -(-len(payload) // FRAG_MAX))


cpdef fail_call(Call call, int status, str why):
    """Give a call its one answer, a failure."""
    call.done = True
    # Dropping the Call's reference to its owner once answered lets reference counting free both.
    owner, call.owner = call.owner, None
    if type(owner) is UnikernelExchange:
        (<UnikernelExchange>owner)._failed(status, why)
    else:
        owner.unikernel_failed(status, why)


cdef class InstanceCore:
    """What the request path reads of an instance; Instance (instance.py) adds the rest."""

    cdef public str name, state
    cdef public int fd
    cdef public bytes guest_mac, host_mac     # the guest's and ours (the link's)
    cdef public dict inflight
    cdef public long inflight_frames, malformed, served
    cdef public list outbox
    cdef public bint writing
    cdef public object reassembler
    cdef public double last_pong


cdef class PoolCore:
    """The request path of one pool; Pool (pool.py) adds the instances' lifecycle."""

    cdef public object name, loop, tunables, method, queue
    cdef public list instances
    cdef public bint closed
    cdef public double latency_sum
    cdef public long latency_count
    cdef public long _rr
    cdef public object _ring, _ring_names, _ready_names, _owners, _by_name, _flush_handle
    cdef public list _dirty
    cdef uint32_t _next_id
    cdef long long _direct_ms       # the millisecond of the last request sent at once
    cdef int pick
    cdef long max_inflight, max_inflight_frames, queue_limit
    cdef bint native_clock
    cdef object flush_cb, call_soon, clock

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
        self._rr = 0
        self._ring = None
        self._ring_names = ()
        self._ready_names = None
        self._owners = {}
        self._by_name = {}
        self._dirty = []
        self._flush_handle = None
        self.pick = PICK_HASH if method == "hash" else PICK_LEAST_CONN if method == "least_conn" \
            else PICK_ROUND_ROBIN
        self.max_inflight = tunables.max_inflight
        self.max_inflight_frames = tunables.max_inflight_frames
        self.queue_limit = tunables.queue_limit
        self.flush_cb = self._flush
        self.call_soon = loop.call_soon
        self.clock = loop.time
        self.native_clock = is_native_clock(self.clock, _native_clocks)

    cdef inline double _now(self):
        return monotonic() if self.native_clock else self.clock()

    def next_id(self):
        """The next request id: 32-bit, increasing, never 0, wrapping (one sequence per pool)."""
        cdef uint32_t rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        return rid

    # Dispatch -----------------------------------------------------------------

    def submit(self, Call call):
        """Send call to an instance now, or queue it; fails it at once when nothing can take it."""
        self._submit(call)

    cdef _submit(self, Call call):
        if self.closed:
            fail_call(call, 502, f'unikernel "{self.name}" is stopped')
            return
        inst = self._pick(call)
        if inst is not None:
            self._dispatch_to(inst, call)
        elif not self.active():
            fail_call(call, 502, f'no live instance in unikernel "{self.name}"')
        elif len(self.queue) >= self.queue_limit:
            fail_call(call, 503, f'queue of unikernel "{self.name}" is full')
        else:
            self.queue.append(call)

    def cancel(self, Call call):
        """Forget a call (timed out or its client left); a late reply is ignored."""
        self._cancel(call)

    cdef _cancel(self, Call call):
        cdef InstanceCore inst
        call.done = True
        if call.instance is not None:
            inst = call.instance
            call.instance = None
            if inst.inflight.pop(call.req_id, None) is not None:
                inst.inflight_frames -= call.nframes
                inst.reassembler.forget(inst.guest_mac, call.req_id)
            self._after(inst)

    def take_latency(self):
        """(mean reply latency in seconds, number of replies) since the last call."""
        count, total = self.latency_count, self.latency_sum
        self.latency_count, self.latency_sum = 0, 0.0
        return (total / count if count else 0.0), count

    cdef object _pick(self, Call call):
        cdef list instances = self.instances
        cdef InstanceCore inst, best
        cdef Py_ssize_t count, step, best_load = 0, load
        cdef long nframes = call.nframes
        if self.pick == PICK_HASH and call.key is not None:
            ready = self._ready_names
            if ready is None:
                ready = self._ready_names = tuple([i.name for i in instances if i.state == READY])
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
            found = self._by_name[owner]
            return found if found.has_room(nframes, self.tunables) else None
        count = len(instances)
        best = None
        for step in range(count):
            inst = instances[(self._rr + step) % count]
            if inst.state != READY:
                continue
            load = len(inst.inflight)
            # Instance.has_room, inlined.
            if load >= self.max_inflight or (load and inst.inflight_frames + nframes > self.max_inflight_frames):
                continue
            if self.pick != PICK_LEAST_CONN:
                best = inst
                break
            if best is None or load < best_load:
                best, best_load = inst, load
        if best is not None and count > 1:
            self._rr = (instances.index(best) + 1) % count
        return best

    def _dispatch(self, inst, Call call):
        self._dispatch_to(inst, call)

    cdef _dispatch_to(self, InstanceCore inst, Call call):
        cdef double now = monotonic()
        cdef long long now_ms = <long long>(now * 1000.0)
        # An idle instance's request leaves at once, at most once a millisecond per pool (pool_core.py).
        cdef bint direct = now_ms != self._direct_ms and not inst.inflight and not inst.outbox \
            and not inst.writing
        cdef uint32_t rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        call.instance = inst
        call.req_id = rid
        call.sent_at = now if self.native_clock else self.clock()
        inst.inflight[rid] = call
        inst.inflight_frames += call.nframes
        payload = call.payload
        if type(payload) is not bytes:
            payload = bytes(payload)
        if PyBytes_GET_SIZE(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {PyBytes_GET_SIZE(payload)} bytes exceeds {MAX_PAYLOAD}")
        frames = encode_frames(inst.guest_mac, inst.host_mac, rid, call.op, payload, <uint32_t>c_time(NULL))
        if direct:
            self._direct_ms = now_ms
            inst.outbox.extend(frames)
            self._push_now(inst)
        else:
            self._queue_frames(inst, frames)

    def _drain(self):
        self._drain_queue()

    cdef _drain_queue(self):
        cdef Call call
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
                self._dispatch_to(inst, call)
            elif self.pick == PICK_HASH:
                kept.append(call)       # another key may still fit elsewhere
            else:
                queue.appendleft(call)  # nothing has room: keep the order
                break
        kept.extend(queue)
        self.queue = kept

    # The link -----------------------------------------------------------------

    def _send(self, inst, list frames):
        self._queue_frames(inst, frames)

    cdef _queue_frames(self, InstanceCore inst, list frames):
        # Frames wait in the instance's outbox until the end of this loop iteration (pool_core.py).
        cdef list outbox = inst.outbox
        if not outbox:
            self._dirty.append(inst)
            if self._flush_handle is None:
                self._flush_handle = self.call_soon(self.flush_cb)
        outbox.extend(frames)

    def _flush(self):
        cdef InstanceCore inst
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for inst in dirty:
            if inst.outbox and not inst.writing:
                self._push_now(inst)

    def _push(self, inst):
        self._push_now(inst)

    cdef _push_now(self, InstanceCore inst):
        cdef list outbox = inst.outbox
        cdef Py_ssize_t sent
        if self.closed or inst.state in (RETIRED, STOPPED):
            outbox.clear()
            return
        while outbox:
            try:
                sent = send_list(inst.fd, outbox)
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

    def _readable(self, InstanceCore inst):
        cdef list messages = []
        cdef Py_ssize_t malformed = 0
        cdef Message msg
        cdef Call call
        cdef dict inflight
        cdef bint replied = False
        cdef double now
        try:
            receive_into(inst.fd, inst.reassembler, READ_BATCH, messages, &malformed)
        except OSError:
            return
        if malformed:
            inst.malformed += malformed
        if not messages:
            return
        inflight = inst.inflight
        now = self._now()
        for msg in messages:
            call = inflight.pop(msg.req_id, None)
            if call is None:
                if msg.op == OP_PING:
                    self._pong(inst, msg.req_id)
                continue
            inst.inflight_frames -= call.nframes
            inst.served += 1
            call.instance = None
            call.done = True
            self.latency_sum += now - call.sent_at
            self.latency_count += 1
            replied = True
            owner, call.owner = call.owner, None     # see fail_call
            if type(owner) is UnikernelExchange:
                (<UnikernelExchange>owner)._reply(msg.status, msg.payload)
            else:
                owner.unikernel_reply(msg.status, msg.payload)
        if replied:
            inst.last_pong = monotonic()      # any reply shows the worker is alive (time.monotonic)
            self._after(inst)

    def _after_reply(self, inst):
        self._after(inst)

    cdef _after(self, InstanceCore inst):
        if inst.state == DRAINING and not inst.inflight:
            self.supervisor.retire(inst)
        if self.queue:
            self._drain_queue()


# The exchange ------------------------------------------------------------------------

cdef class _Route:
    """What every request of one `unikernel_pass` plan reads, looked up once per plan."""

    cdef object pools           # the app's UnikernelPools it was looked up in
    cdef PoolCore pool
    cdef str service, spec
    cdef int kind, part         # the service and part_kind(spec)
    cdef object key             # the pool's hash key template, or None
    cdef object add_headers
    cdef double timeout
    cdef object location, prefix    # the plan's location and its uri_prefix
    cdef object clock
    cdef bint native_clock

    cdef double now(self):
        return monotonic() if self.native_clock else self.clock()


cdef _Route _new_route(plan, app, pool, str service, key):
    cdef _Route route = _Route.__new__(_Route)
    route.pools = app.unikernels
    route.pool = pool
    route.service = service
    route.kind = service_code(service)
    route.spec = plan.unikernel.payload
    route.part = part_kind(route.spec)
    route.key = key
    route.add_headers = plan.add_headers
    route.timeout = pool.tunables.request_timeout
    route.location = getattr(plan, "location", None)
    route.prefix = uri_prefix(route.location)
    route.clock = app.clock
    route.native_clock = is_native_clock(route.clock, _native_clocks)
    return route


# plan -> _Route; plans live as long as their config (a worker's life).
cdef dict _routes = {}


cdef _Route _plan_route(plan, app):
    cdef _Route route = _routes.get(plan)
    pools = app.unikernels
    if route is not None and route.pools is pools:
        return route
    name = plan.unikernel.pool
    route = _new_route(plan, app, pools.pools[name], pools.services[name], pools.keys[name])
    if len(_routes) >= 4096:
        _routes.clear()     # configs replaced in one process (tests): keep it bounded
    _routes[plan] = route
    return route


def start_exchange(conn, request, plan, app):
    """Answer a request of a `unikernel_pass` location: its exchange becomes the connection's handler."""
    cdef _Route route = _plan_route(plan, app)
    cdef UnikernelExchange exchange = UnikernelExchange.__new__(UnikernelExchange)
    exchange.conn = conn
    exchange.request = request
    exchange.plan = plan
    exchange.app = app
    exchange.pool = route.pool
    exchange.service = route.service
    exchange.key = route.key
    exchange.route = route
    conn_set_handler(conn, exchange)
    exchange._start()


cdef class UnikernelExchange:
    """Answers one request from a pool: the handler the client connection calls back (like ProxyExchange)."""

    cdef public object conn, request, plan, app, service, key
    cdef public PoolCore pool
    cdef public list body       # pieces of the request body; None until one comes
    cdef public Py_ssize_t body_size
    cdef public Call call
    cdef public double deadline
    cdef public bint done
    cdef _Route route

    def __init__(self, conn, request, plan, app, pool, service, key):
        self.conn = conn
        self.request = request
        self.plan = plan
        self.app = app
        self.pool = pool
        self.service = service
        self.key = key
        self.route = _new_route(plan, app, pool, service, key)

    # Events from the client -------------------------------------------------

    def start(self):
        """Send the request now, or once its body is in."""
        self._start()

    cdef _start(self):
        conn = self.conn
        if not conn_body_pending(conn):
            self._submit()
        elif self.request.version == 11 and (self.request.header("expect") or "").lower() == "100-continue":
            conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def client_body(self, pieces):
        if self.done:
            return
        if self.body is None:
            self.body = []
        for piece in pieces:
            self.body_size += len(piece)
            self.body.append(piece)
        if self.body_size > MAX_PAYLOAD:
            self._answer_error(413)

    def client_body_end(self):
        if not self.done and self.call is None:
            self._submit()

    def client_aborted(self):
        if self.done:
            return
        self.request.status = self.request.status or 499
        self.cancel()
        self.conn.finish_response()

    def cancel(self):
        """Stop without answering (the connection answers by itself)."""
        if not self.done:
            self.done = True
            if self.call is not None:
                self.pool._cancel(self.call)

    def client_write_paused(self):
        pass    # the whole response is written at once

    def client_write_resumed(self):
        pass

    def check_deadline(self, double now):
        if self.done or self.call is None or now < self.deadline:
            return
        self.pool._cancel(self.call)
        self._log(f'unikernel "{self.pool.name}" timed out after {self.pool.tunables.request_timeout:g}s')
        self._answer_error(504)

    # Events from the pool ------------------------------------------------------

    def unikernel_reply(self, int status, bytes payload):
        """The reply Message's status and payload."""
        self._reply(status, payload)

    def unikernel_failed(self, int status, str why):
        """No instance could answer."""
        self._failed(status, why)

    cdef _reply(self, int status, bytes payload):
        if self.done:
            return
        self.done = True
        if self.route.kind == SVC_ECHO and status == ST_OK:
            conn_send_simple(self.conn, 200, payload, OCTETS, NO_EXTRA, self.route.add_headers)   # _read's
            return
        code, body, ctype, extra = read(self.route.kind, self.request, status, payload)
        if body is None:
            self.conn.send_error(code, self.route.add_headers)
        else:
            conn_send_simple(self.conn, code, body, ctype, extra, self.route.add_headers)

    cdef _failed(self, int status, str why):
        if self.done:
            return
        self._log(why)
        self._answer_error(status)

    # Helpers ----------------------------------------------------------------------

    cdef _submit(self):
        cdef _Route route = self.route
        cdef Call call
        cdef bytes body
        if self.body:
            body = b"".join(self.body)
            self.body = None
        else:
            body = b""
        try:
            if route.kind == SVC_ECHO:
                # build()'s echo case without its tuple: the route bench/instructions.py measures.
                payload = part_of(self.request, body, route.spec, route.part, route.location, route.prefix) or b""
                op, idempotent, key = OP_ECHO, True, None
            else:
                op, payload, idempotent, key = build(route.kind, self.request, body, route.spec, route.part,
                                                     route.location, route.prefix)
        except ServiceRefused as exc:
            self.done = True
            if exc.extra:
                self.conn.send_simple(exc.status, padded(self.request, exc.status, error_page(exc.status)),
                                      b"text/html", exc.extra,
                                      route.add_headers)
            else:
                self.conn.send_error(exc.status, route.add_headers)
            return
        if len(payload) > MAX_PAYLOAD:
            self._answer_error(413)
            return
        if self.key is None:
            key = None      # the pool does not hash
        elif key is None:
            key = (<str>self.key.render(self.request)).encode("utf-8", "surrogateescape")
        call = Call.__new__(Call)
        call.op = op
        call.payload = payload
        call.key = key
        call.idempotent = idempotent
        call.owner = self
        call.nframes = max(1, -(-len(payload) // FRAG_MAX))
        self.call = call
        self.deadline = route.now() + route.timeout
        self.pool._submit(call)

    cdef _answer_error(self, int status):
        if self.done:
            return
        self.done = True
        if self.call is not None:
            self.pool._cancel(self.call)
        self.conn.send_error(status, self.route.add_headers)

    cdef _log(self, str detail):
        request = self.request
        log.error(f'*{request.connection_id} {detail}, client: {request.remote_addr}, '
                  f'server: {request.server_name}, '
                  f'request: "{request.method} {request.request_uri} {request.protocol}"')
