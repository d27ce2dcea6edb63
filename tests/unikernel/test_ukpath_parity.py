"""The compiled unikernel request path (_fastpath/ukpath.pyx) against its Python twins.

The services' builders and readers (gateway/unikernel/dispatch.py) get the same requests and replies;
the exchange and the pool core (dispatch.py, pool_core.py) serve the same requests through a
socketpair to a guest played by the test (no QEMU), which answers whole, fragmented and shuffled,
with error statuses, malformed and oversized frames, duplicates and replies to nobody, or not at
all. Both must send the guest the same payloads and the client the same responses.
"""

import asyncio
import importlib
import random
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ServiceRefused
from gateway.http.request import Request as PyRequest
from gateway.unikernel import dispatch, pool_core, wire
from gateway.unikernel.instance import READY, Instance
from gateway.unikernel.link import SocketpairLink
from gateway.unikernel.tunables import Tunables

GUEST_MAC = "52:54:00:00:00:01"


def compiled():
    """_fastpath.ukpath; fails loudly if the extension is not built."""
    try:
        return importlib.import_module("_fastpath.ukpath")
    except ImportError as exc:
        pytest.fail(f"_fastpath.ukpath is not built ({exc}): run `make extensions`")


def compiled_request_class():
    try:
        return importlib.import_module("_fastpath.request").Request
    except ImportError as exc:
        pytest.fail(f"_fastpath.request is not built ({exc})")


class Location:
    def __init__(self, modifier, pattern):
        self.modifier, self.pattern = modifier, pattern


def make_request(cls, method, uri, args, headers, location):
    fields = [(name.encode(), name.title().encode(), value.encode("latin-1")) for name, value in headers]
    request = cls(method, uri + ("?" + args if args else ""), uri, args, 11, fields)
    request.location = location
    return request


# Services ------------------------------------------------------------------------------

def outcome(call):
    try:
        return ("ok", call())
    except ServiceRefused as exc:
        return ("refused", exc.status, exc.extra)


SPECS = ["uri", "args", "body", "header:authorization", "header:x-hub-signature-256", "header:x-sig"]
LOCATIONS = [None, Location("", "/kv/"), Location("^~", "/s/"), Location("=", "/kv/"), Location("", "/exact")]
text = st.text(alphabet=st.sampled_from("ab/?=&%é\udcff ~01"), max_size=12)
header_value = st.text(alphabet=st.sampled_from("Bearer abc xyz= 9"), max_size=20)


@settings(max_examples=400, deadline=None)
@given(service=st.sampled_from(sorted(dispatch.SERVICES)),
       method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]),
       uri=text.map(lambda t: "/" + t), args=text, spec=st.sampled_from(SPECS),
       location=st.sampled_from(LOCATIONS), body=st.binary(max_size=40),
       headers=st.lists(st.tuples(st.sampled_from(["authorization", "x-ttl", "if-none-match",
                                                   "x-hub-signature-256", "x-sig"]), header_value),
                        max_size=3),
       request_class=st.sampled_from(["python", "compiled"]))
def test_builders_agree(service, method, uri, args, spec, location, body, headers, request_class):
    fast = compiled()
    cls = PyRequest if request_class == "python" else compiled_request_class()
    request = make_request(cls, method, uri, args, headers, location)
    py = outcome(lambda: dispatch.PY[2](service, request, body, spec))
    got = outcome(lambda: fast.build_request(service, request, body, spec))
    assert got == py


@settings(max_examples=400, deadline=None)
@given(service=st.sampled_from(sorted(dispatch.SERVICES)), method=st.sampled_from(["GET", "HEAD", "PUT"]),
       status=st.integers(0, 12), payload=st.binary(max_size=30))
def test_readers_agree(service, method, status, payload):
    fast = compiled()
    request = make_request(PyRequest, method, "/x", "", [], None)
    assert fast.read_reply(service, request, status, payload) == \
        dispatch.PY[3](service, request, status, payload)


def test_static_reader_on_short_payloads():
    fast = compiled()
    request = make_request(PyRequest, "GET", "/x", "", [], None)
    for payload in [b"", b"\x05", b"\x02ab", b"\x02ab\x01", b"\x02ab\x09e", b"\x00\x00", b"\x01t\x02etbody"]:
        for status in (0, 10):
            assert fast.read_reply("static", request, status, payload) == \
                dispatch.PY[3]("static", request, status, payload)


# The exchange and the pool, through a socketpair ----------------------------------------

class Plan:
    """A location's plan, as much of it as the exchange reads (hashable by identity, like LocationPlan)."""

    def __init__(self, spec):
        self.unikernel = types.SimpleNamespace(pool="echo", payload=spec)
        self.add_headers = ("h",)
        self.location = None


class Conn:
    """The client connection: records what the exchange answers."""

    def __init__(self, log):
        self.log = log
        self.handler = None
        self.pending_body = False

    def body_pending(self):
        return self.pending_body

    def send_simple(self, status, body=b"", content_type=b"text/html", extra=b"", add_headers=None):
        self.log.append(("simple", status, bytes(body), content_type, extra, add_headers))

    def send_error(self, status, add_headers=None):
        self.log.append(("error", status, add_headers))

    def send_raw(self, data):
        self.log.append(("raw", data))

    def finish_response(self):
        self.log.append(("finish",))


class Guest:
    """Plays the unikernel on the other end of a socketpair, one answer plan per request."""

    def __init__(self, link):
        self.sock = link._peer
        self.sock.setblocking(False)
        self.reassembler = wire.PY.Reassembler()
        self.received = []          # (req_id, op, payload) in arrival order

    def poll(self):
        while True:
            try:
                frame = self.sock.recv(wire.FRAME_MAX + 64)
            except BlockingIOError:
                return
            msg = self.reassembler.feed(frame)
            if msg is not None:
                self.received.append((msg.req_id, msg.op, msg.payload))

    def send(self, frames):
        for frame in frames:
            self.sock.send(frame)


def reply_frames(plan, rid, op, payload, host, guest, rng):
    """The frames the guest sends for one request, by plan."""
    def encode(status=0, body=payload, req_id=rid):
        return wire.PY.encode(host, guest, req_id, op, body, status=status, reply=True)
    if plan == "ok":
        return encode()
    if plan == "status":
        return encode(status=1)
    if plan == "big":
        return encode(body=payload * 40)          # fragmented
    if plan == "shuffled":
        frames = encode(body=payload * 25)
        rng.shuffle(frames)
        return frames
    if plan == "duplicate":
        frames = encode(body=payload * 3)
        return frames[:1] + frames
    if plan == "malformed":
        good = encode()
        bad = [good[0][:20], good[0][:12] + b"\x08\x00" + good[0][14:],
               good[0][:14] + b"\x07" + good[0][15:], b"\x00" * 60,
               encode(body=b"x" * 3000)[1][:-5]]       # truncated second fragment
        return bad + good
    if plan == "nobody":
        return encode(req_id=rid + 100000) + encode()
    return []       # "silent": the request times out


PLANS = ["ok", "status", "big", "shuffled", "duplicate", "malformed", "nobody", "silent"]


def make_instance(impl, link):
    """A READY instance on link for one implementation's pool.

    The compiled pool needs instances built on its InstanceCore with a compiled Reassembler: what
    Instance is when the extensions are loaded; under GATEWAY_NO_EXTENSIONS=1 one is built here.
    """
    if impl == "python" or compiled().InstanceCore in Instance.__mro__:
        inst = Instance("echo", 0, link, GUEST_MAC, [], "", "", "tcg")
    else:
        inst = type("CompiledInstance", (compiled().InstanceCore,), {"has_room": Instance.has_room})()
        inst.name, inst.fd, inst.host_mac = "echo-0", link.fileno(), link.mac
        inst.guest_mac = wire.parse_mac(GUEST_MAC)
        inst.inflight, inst.outbox = {}, []
        inst.reassembler = importlib.import_module("_fastpath.wire").Reassembler()
    inst.state = READY
    return inst


async def serve(impl, scenario):
    """Run a scenario through one implementation; what the guest got and what the client got."""
    loop = asyncio.get_running_loop()
    if impl == "python":
        core, start = pool_core.PY_POOL_CORE, dispatch.PY[1]
    else:
        core, start = compiled().PoolCore, compiled().start_exchange
    tunables = Tunables(request_timeout=5.0, max_inflight=4, max_inflight_frames=40, queue_limit=3)

    class TestPool(core):
        def __init__(self):
            self._core_init("echo", loop, tunables, "round_robin")
            self.supervisor = types.SimpleNamespace(retire=lambda inst: None)

        def active(self):
            return [i for i in self.instances if i.state == READY]

        def _pong(self, inst, req_id):
            pass

    link = SocketpairLink()
    pool = TestPool()
    inst = make_instance(impl, link)
    pool.instances.append(inst)
    pool._by_name[inst.name] = inst
    loop.add_reader(inst.fd, pool._readable, inst)
    guest = Guest(link)
    rng = random.Random(7)
    pools = types.SimpleNamespace(pools={"echo": pool}, services={"echo": "echo"}, keys={"echo": None})
    app = types.SimpleNamespace(unikernels=pools, clock=loop.time)
    log = []
    conns = []
    try:
        for uri, spec, plan_name, body_size in scenario:
            plan = Plan(spec)
            request = make_request(PyRequest, "POST", uri, "a=1", [], None)
            conn = Conn(log)
            conn.pending_body = body_size is not None
            conns.append((conn, plan_name))
            start(conn, request, plan, app)
            if body_size is not None:
                conn.handler.client_body([b"b" * body_size])
                conn.handler.client_body_end()
        seen = 0
        for _ in range(300):
            await asyncio.sleep(0.002)
            guest.poll()
            for rid, op, payload in guest.received[seen:]:
                index = [c for c, _ in conns if c.handler is not None and getattr(c.handler, "call", None)
                         is not None and c.handler.call.req_id == rid]
                plan_name = next(p for c, p in conns if index and c is index[0])
                guest.send(reply_frames(plan_name, rid, op, payload, inst.host_mac, inst.guest_mac, rng))
            seen = len(guest.received)
            if seen >= sum(1 for c, _ in conns if getattr(c.handler, "call", None) is not None) and \
                    all(c.handler.done for c, p in conns if p != "silent"):
                break
        for conn, _ in conns:
            conn.handler.check_deadline(loop.time() + 10)     # the silent ones time out: 504
        await asyncio.sleep(0.01)
        return ([payload for _, _, payload in guest.received], log, inst.malformed, inst.served,
                len(inst.inflight), inst.inflight_frames)
    finally:
        loop.remove_reader(inst.fd)
        link.close()


@pytest.mark.parametrize("seed", range(6))
async def test_exchange_and_pool_agree(seed):
    rng = random.Random(seed)
    scenario = []
    for i in range(rng.randint(1, 4)):
        body = rng.choice([None, None, 0, 10, 3000, (1 << 20) + 1])
        spec = rng.choice(["uri", "args", "body"])
        scenario.append((f"/r{seed}/{i}/" + "u" * rng.randint(0, 2000), spec, rng.choice(PLANS), body))
    python = await serve("python", scenario)
    fast = await serve("compiled", scenario)
    assert fast == python
    assert python[1], "the clients got no answer at all"


async def test_a_queue_beyond_its_limit_fails_and_every_client_gets_one_answer():
    scenario = [(f"/q/{i}", "uri", "ok", None) for i in range(9)]    # 4 in flight, 3 queued, 2 refused
    python = await serve("python", scenario)
    fast = await serve("compiled", scenario)
    assert fast == python
    answers = [entry for entry in python[1] if entry[0] in ("simple", "error")]
    assert len(answers) == 9
    assert sum(1 for entry in answers if entry[:2] == ("error", 503)) == 2


def test_both_modules_select_the_same_implementation():
    compiled()
    assert dispatch.IMPLEMENTATION == pool_core.IMPLEMENTATION


async def test_every_guest_behaviour_at_once():
    scenario = [(f"/all/{plan}/" + "p" * 1500, "uri", plan, None) for plan in PLANS]
    python = await serve("python", scenario)
    fast = await serve("compiled", scenario)
    assert fast == python
    assert python[2] > 0, "no malformed frame was counted"
