"""The compiled wire codec (_fastpath/wire.pyx) against its Python twin, frame for frame.

Both implementations are fed the same frames, well-formed, fragmented, shuffled, duplicated, inconsistent
and malformed, and must return the same Messages and raise MalformedFrame with the same text.
"""

import importlib
import os
import random
import socket

import pytest

from gateway.errors import MalformedFrame
from gateway.unikernel import wire

PY = wire.PY
DST = wire.parse_mac("52:54:00:00:00:07")
SRC = wire.parse_mac("02:00:00:00:00:01")
OTHER = wire.parse_mac("02:00:00:00:00:02")


def compiled():
    """_fastpath.wire; fails loudly if the extension is not built."""
    try:
        return importlib.import_module("_fastpath.wire")
    except ImportError as exc:
        pytest.fail(f"_fastpath.wire is not built ({exc}): run `make extensions`")


def outcome(reassembler, frame):
    """What feeding one frame gives, comparable across implementations."""
    try:
        msg = reassembler.feed(frame)
    except MalformedFrame as exc:
        return ("malformed", str(exc))
    if msg is None:
        return None
    return (bytes(msg.src), msg.req_id, msg.op, msg.status, msg.flags, msg.now, bytes(msg.payload))


def run_both(frames, max_pending=64):
    fast = compiled()
    py_r, fast_r = PY.Reassembler(max_pending), fast.Reassembler(max_pending)
    py_out = [outcome(py_r, f) for f in frames]
    fast_out = [outcome(fast_r, f) for f in frames]
    assert fast_out == py_out
    assert fast_r.pending == py_r.pending
    return py_out


def raw(total, off, flen, data=None, *, version=1, ethertype=wire.ETHERTYPE, op=0x10, rid=1, status=0,
        flags=1, now=0, src=SRC):
    data = bytes(flen) if data is None else data
    return (DST + src + ethertype.to_bytes(2, "big")
            + wire.HEADER.pack(version, op, flags, rid, total, off, flen, status, now) + data)


@pytest.mark.parametrize("size", [0, 1, 64, wire.FRAG_MAX - 1, wire.FRAG_MAX, wire.FRAG_MAX + 1,
                                  3 * wire.FRAG_MAX, 100_000, wire.MAX_PAYLOAD])
def test_encode_gives_the_same_bytes(size):
    fast = compiled()
    payload = random.Random(size).randbytes(size)
    for kw in ({}, {"status": 7, "reply": True, "now": 0xFFFFFFFF}):
        assert fast.encode(DST, SRC, 0xFFFFFFFF, wire.Op.ECHO, payload, **kw) == \
            PY.encode(DST, SRC, 0xFFFFFFFF, wire.Op.ECHO, payload, **kw)
    assert fast.encode(DST, SRC, 5, 0x20, bytearray(payload)) == PY.encode(DST, SRC, 5, 0x20, payload)
    assert fast.encode(DST, SRC, 5, 0x20, memoryview(payload)) == PY.encode(DST, SRC, 5, 0x20, payload)


def test_encode_refuses_what_the_twin_refuses():
    fast = compiled()
    for impl in (PY, fast):
        with pytest.raises(ValueError):
            impl.encode(DST, SRC, 1, wire.Op.ECHO, bytes(wire.MAX_PAYLOAD + 1))


@pytest.mark.parametrize("seed", range(6))
def test_fragmented_shuffled_and_interleaved(seed):
    rng = random.Random(seed)
    frames = []
    for rid in range(1, 6):
        payload = rng.randbytes(rng.choice([0, 10, wire.FRAG_MAX, wire.FRAG_MAX + 1, 9000, 50_000]))
        frames += wire.PY.encode(SRC, DST, rid, wire.Op.ECHO, payload, reply=True, status=rid % 3,
                                 now=rid * 1000)
    rng.shuffle(frames)
    out = run_both(frames)
    assert sum(o is not None for o in out) == 5


def test_duplicates_inconsistent_and_evicted_fragments():
    a = PY.encode(SRC, DST, 9, wire.Op.ECHO, bytes(5000), reply=True)
    frames = [a[1], a[1],                                           # duplicate
              raw(6000, 0, wire.FRAG_MAX, rid=9, src=DST),          # other total: inconsistent
              raw(5000, 0, wire.FRAG_MAX, rid=9, src=DST, status=3),  # other status: inconsistent
              raw(5000, 0, wire.FRAG_MAX, rid=9, src=DST, op=0x20),   # other op: inconsistent
              a[0], a[2], a[3],                                     # completes
              a[2]]                                                 # a late duplicate starts a new partial
    out = run_both(frames)
    assert out[1][0] == "malformed" and out[7] is not None
    # More partial messages than max_pending: the oldest is evicted in both.
    many = [PY.encode(SRC, DST, rid, wire.Op.ECHO, bytes(3000))[0] for rid in range(10)]
    rest = [PY.encode(SRC, DST, rid, wire.Op.ECHO, bytes(3000))[1:] for rid in range(10)]
    run_both(many + [f for r in rest for f in r], max_pending=4)


def test_same_req_id_from_two_sources_are_two_messages():
    a = PY.encode(DST, SRC, 1, wire.Op.ECHO, b"a" * 3000)
    b = PY.encode(DST, OTHER, 1, wire.Op.ECHO, b"b" * 3000)
    out = run_both([a[0], b[0], a[1], b[1], a[2], b[2]])
    assert [o[0] for o in out if o] == [SRC, OTHER]


MALFORMED = [
    b"", b"\x00", bytes(13), bytes(30),
    raw(10, 0, 10)[:-1],                                   # truncated payload
    raw(10, 0, 10, version=2),
    raw(10, 0, 10, version=0),
    raw(10, 0, 10, ethertype=0x0800),
    raw(10, 0, 10, ethertype=0x86DD),
    raw(wire.MAX_PAYLOAD + 1, 0, wire.FRAG_MAX),            # oversized total
    raw(0xFFFFFFFF, 0, wire.FRAG_MAX),
    raw(5000, 100, wire.FRAG_MAX),                          # offset not on a fragment boundary
    raw(5000, 6000, 0),                                     # offset past the end
    raw(5000, 0, 100),                                      # wrong fragment length
    raw(3000, 2 * wire.FRAG_MAX, 40),                       # last fragment too short
    raw(2 * wire.FRAG_MAX, 2 * wire.FRAG_MAX, 0),           # empty trailing fragment
    raw(5000, 0, wire.FRAG_MAX)[:100],                      # truncated fragment
    raw(0xFFFF, 0, 0xFFFF),                                 # frag_len beyond FRAG_MAX
]


@pytest.mark.parametrize("frame", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_frames_give_the_same_error(frame):
    out = run_both([frame])
    assert out[0][0] == "malformed"


def test_valid_frames_with_padding_and_random_garbage():
    rng = random.Random(42)
    frames = [f + bytes(rng.randrange(0, 40)) for f in PY.encode(SRC, DST, 3, 0x30, rng.randbytes(4000))]
    # Random bytes under a valid Ethernet header and version: nearly all malformed, all judged alike.
    for _ in range(2000):
        head = DST + SRC + b"\x88\xb5\x01"
        frames.append(head + rng.randbytes(rng.randrange(0, 60)))
    # Headers mutated one field at a time.
    for _ in range(2000):
        total = rng.choice([0, 1, 1476, 1477, 5000, wire.MAX_PAYLOAD])
        off = rng.choice([0, 1476, 2952, total, total + 1476])
        flen = rng.choice([0, 1, 1476, min(0xFFFF, max(0, total - off)), min(1476, max(0, total - off))])
        frames.append(raw(total, off, flen, bytes(min(flen, rng.randrange(0, 1500))), rid=rng.randrange(4)))
    run_both(frames, max_pending=8)


def test_forget_and_pending():
    fast = compiled()
    frames = PY.encode(SRC, DST, 77, wire.Op.ECHO, bytes(4000))
    for impl in (PY, fast):
        r = impl.Reassembler()
        assert r.feed(frames[0]) is None and r.pending == 1
        r.forget(DST, 77)
        assert r.pending == 0
        assert r.feed(frames[1]) is None and r.pending == 1


@pytest.mark.parametrize("impl_name", ["py", "fast"])
def test_send_frames_and_receive_over_a_socketpair(impl_name):
    impl = PY if impl_name == "py" else compiled()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    try:
        frames = []
        for rid in range(1, 41):
            frames += PY.encode(SRC, DST, rid, wire.Op.ECHO, bytes(rid * 100), reply=True)
        frames.insert(3, b"garbage")
        frames.insert(10, raw(10, 0, 10, version=9))
        sent = 0
        got = []
        malformed = 0
        while sent < len(frames):
            n = impl.send_frames(a.fileno(), frames[sent:])
            assert n > 0
            sent += n
            break
        # Read everything the socket holds, a few frames at a time, with one reassembler.
        r = impl.Reassembler()
        while True:
            msgs, bad, count = impl.receive(b.fileno(), r, 7)
            got += [(m.req_id, len(m.payload)) for m in msgs]
            malformed += bad
            if sent < len(frames):
                sent += impl.send_frames(a.fileno(), frames[sent:])
            if count == 0 and sent == len(frames):
                break
        assert got == [(rid, rid * 100) for rid in range(1, 41)]
        assert malformed == 2
        # A full socket: send_frames stops and says how many went, never raises EAGAIN.
        big = PY.encode(SRC, DST, 1, wire.Op.ECHO, bytes(1000))[0]
        total = 0
        for _ in range(100):
            n = impl.send_frames(a.fileno(), [big] * 64)
            total += n
            if n < 64:
                break
        assert n < 64
        assert impl.send_frames(a.fileno(), [big]) == 0
        assert impl.receive(b.fileno(), impl.Reassembler(), 1_000_000)[2] == total
    finally:
        a.close()
        b.close()


def test_send_frames_raises_on_a_broken_socket():
    fast = compiled()
    for impl in (PY, fast):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        b.close()
        try:
            with pytest.raises(OSError):
                impl.send_frames(a.fileno(), [b"x" * 60])
        finally:
            a.close()


def test_the_selected_implementation():
    expected = "python" if os.environ.get("GATEWAY_NO_EXTENSIONS") == "1" else "compiled"
    assert wire.IMPLEMENTATION == expected
