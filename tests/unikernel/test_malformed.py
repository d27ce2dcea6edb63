"""A barrage of malformed frames: the guest drops and counts each one and keeps answering correctly."""

import random
import struct

import pytest

from gateway.unikernel import wire
from gateway.unikernel.wire import FRAG_MAX, HEADER, MAX_PAYLOAD, Op, Status

pytestmark = pytest.mark.qemu


def _frame(worker, *, total, off, flen, data=None, version=1, op=Op.ECHO, flags=0, status=0, rid=0xABCD):
    data = bytes(flen) if data is None else data
    return (worker.guest_mac + worker.link.mac + wire.ETHERTYPE.to_bytes(2, "big")
            + HEADER.pack(version, op, flags, rid, total, off, flen, status, 0) + data)


def test_barrage_of_malformed_frames(boot):
    worker = boot("echo")
    before = worker.stats()
    rng = random.Random(4)
    prefix = worker.guest_mac + worker.link.mac + wire.ETHERTYPE.to_bytes(2, "big")
    expected = {
        "drop_short": [prefix, prefix + bytes(10)]
                      + [worker.guest_mac + b"\x02"] * 3,        # not even an Ethernet header
        "drop_version": [_frame(worker, total=4, off=0, flen=4, version=v) for v in (0, 2, 255)],
        "drop_flags": [_frame(worker, total=4, off=0, flen=4, flags=wire.FLAG_REPLY),
                       _frame(worker, total=4, off=0, flen=4, status=3)],
        "drop_too_big": [_frame(worker, total=MAX_PAYLOAD + 1, off=0, flen=FRAG_MAX),
                         _frame(worker, total=0xFFFFFFFF, off=0, flen=FRAG_MAX)],
        "drop_offset": [_frame(worker, total=5000, off=7, flen=FRAG_MAX),
                        _frame(worker, total=5000, off=0xFFFFF000, flen=FRAG_MAX),
                        _frame(worker, total=5000, off=5 * FRAG_MAX, flen=0)],
        "drop_length": [_frame(worker, total=100, off=0, flen=100)[:-1],          # truncated
                        _frame(worker, total=100, off=0, flen=99, data=bytes(100)),
                        _frame(worker, total=5000, off=0, flen=FRAG_MAX + 1),
                        _frame(worker, total=5000, off=3 * FRAG_MAX, flen=100),
                        _frame(worker, total=3000, off=0, flen=65535, data=bytes(FRAG_MAX))],
    }
    # A first fragment, then its duplicate and a fragment that disagrees on the total length.
    first = _frame(worker, total=5000, off=0, flen=FRAG_MAX, rid=77)
    expected["drop_duplicate"] = [first]
    expected["drop_inconsistent"] = [_frame(worker, total=6000, off=FRAG_MAX, flen=FRAG_MAX, rid=77)]
    random_frames = [rng.randbytes(rng.randrange(0, 1514)) for _ in range(200)]
    random_frames += [prefix + rng.randbytes(rng.randrange(0, 1500)) for _ in range(300)]
    random_frames += [prefix + HEADER.pack(1, Op.ECHO, 0, rng.getrandbits(32), rng.getrandbits(32),
                                           rng.getrandbits(32), rng.getrandbits(16), 0, 0)
                      + rng.randbytes(rng.randrange(0, 1476)) for _ in range(300)]
    # Oversized frames: QEMU drops those beyond a receive buffer before the guest sees them.
    random_frames += [_frame(worker, total=n, off=0, flen=n) for n in (1477, 1600, 9000, 60000)]
    worker.send_raw(first)
    for frames in expected.values():
        for frame in frames:
            worker.send_raw(frame)
    for frame in random_frames:
        worker.send_raw(frame)

    # Still serving, small and large, and nothing it sent back breaks the protocol.
    payload = rng.randbytes(200_000)
    assert worker.request(Op.ECHO, b"still here").payload == b"still here"
    assert worker.request(Op.ECHO, payload).payload == payload
    after = worker.stats()
    for name, frames in expected.items():
        assert after[name] - before[name] >= len(frames), name
    crafted = sum(len(f) for f in expected.values())
    assert after["dropped"] - before["dropped"] >= crafted + 400
    assert worker.malformed_replies == 0
    assert "exception" not in worker.console()


def test_fragments_out_of_order_and_abandoned(boot):
    worker = boot("echo")
    payload = random.Random(9).randbytes(20 * FRAG_MAX + 3)
    rid = worker.ids.next()
    frames = wire.encode(worker.guest_mac, worker.link.mac, rid, Op.ECHO, payload)
    random.Random(2).shuffle(frames)
    # Abandoned partial messages from other ids take the reassembly slots first; the oldest are evicted.
    for junk in range(6):
        worker.send_raw(wire.encode(worker.guest_mac, worker.link.mac, 9000 + junk, Op.ECHO, bytes(5000))[0])
    assert worker.exchange(frames, rid).payload == payload
    stats = worker.stats()
    assert stats["reassembly_evicted"] >= 2
    assert worker.request(Op.ECHO, b"ok").payload == b"ok"


def test_kv_rejects_bad_payloads_and_keeps_data(boot):
    kv = boot("kv")
    assert kv.request(Op.KV_PUT, struct.pack("<IH", 0, 1) + b"a" + b"value").status == Status.OK
    rng = random.Random(3)
    for _ in range(200):
        kv.request(rng.choice([Op.KV_PUT, Op.KV_GET, Op.KV_DELETE, 0x7F]), rng.randbytes(rng.randrange(0, 40)))
    # Random PUTs could have hit key "a"; write it again and read it back.
    assert kv.request(Op.KV_PUT, struct.pack("<IH", 0, 1) + b"a" + b"value").status == Status.OK
    assert kv.request(Op.KV_GET, b"a").payload == b"value"
