"""The host-side codec alone: encoding, decoding, reassembly in any order, rejections."""

import random
import struct

import pytest

from gateway.errors import MalformedFrame
from gateway.unikernel import wire

DST = wire.parse_mac("52:54:00:00:00:07")
SRC = wire.parse_mac("02:00:00:00:00:01")


def test_single_frame_round_trip():
    frames = wire.encode(DST, SRC, 7, wire.Op.ECHO, b"hello", now=1234)
    assert len(frames) == 1
    frag = wire.decode(frames[0])
    assert (frag.dst, frag.src, frag.op, frag.req_id, frag.total_len, frag.now) == (DST, SRC, 0x10, 7, 5, 1234)
    msg = wire.Reassembler().feed(frames[0])
    assert (msg.req_id, msg.op, msg.status, msg.payload) == (7, wire.Op.ECHO, 0, b"hello")


def test_empty_payload():
    msg = wire.Reassembler().feed(wire.encode(DST, SRC, 1, wire.Op.PING)[0])
    assert msg.payload == b""


def test_fragment_sizes_fill_the_mtu():
    payload = bytes(3 * wire.FRAG_MAX + 5)
    frames = wire.encode(DST, SRC, 1, wire.Op.ECHO, payload)
    assert [len(f) for f in frames] == [wire.FRAME_MAX] * 3 + [wire.ETH_LEN + wire.HEADER_LEN + 5]


@pytest.mark.parametrize("size", [wire.FRAG_MAX + 1, 100_000, wire.MAX_PAYLOAD])
def test_reassembly_in_any_order(size):
    payload = random.Random(size).randbytes(size)
    frames = wire.encode(DST, SRC, 99, wire.Op.ECHO, payload, reply=True, status=3)
    random.Random(1).shuffle(frames)
    r = wire.Reassembler()
    results = [r.feed(f) for f in frames]
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1].payload == payload and results[-1].status == 3 and results[-1].flags == wire.FLAG_REPLY
    assert r.pending == 0


def test_interleaved_messages():
    a = wire.encode(DST, SRC, 1, wire.Op.ECHO, b"a" * 5000)
    b = wire.encode(DST, SRC, 2, wire.Op.ECHO, b"b" * 5000)
    r = wire.Reassembler()
    done = [m for pair in zip(a, b) for m in map(r.feed, pair) if m]
    assert [(m.req_id, m.payload[:1]) for m in done] == [(1, b"a"), (2, b"b")]


def test_too_large_payload_is_refused():
    with pytest.raises(ValueError):
        wire.encode(DST, SRC, 1, wire.Op.ECHO, bytes(wire.MAX_PAYLOAD + 1))


def _frame(total, off, flen, data=None, version=1, ethertype=wire.ETHERTYPE):
    data = bytes(flen) if data is None else data
    return (DST + SRC + ethertype.to_bytes(2, "big")
            + wire.HEADER.pack(version, 0x10, 0, 1, total, off, flen, 0, 0) + data)


@pytest.mark.parametrize("frame", [
    b"",
    bytes(30),                                              # shorter than the headers
    _frame(10, 0, 10)[:-1],                                 # truncated payload
    _frame(10, 0, 10, version=2),
    _frame(10, 0, 10, ethertype=0x0800),
    _frame(wire.MAX_PAYLOAD + 1, 0, wire.FRAG_MAX),         # oversized total
    _frame(5000, 100, wire.FRAG_MAX),                       # offset not on a fragment boundary
    _frame(5000, 6000, 0),                                  # offset past the end
    _frame(5000, 0, 100),                                   # wrong fragment length
    _frame(3000, 2 * wire.FRAG_MAX, 40),                    # last fragment too short
], ids=range(10))
def test_malformed_frames_raise(frame):
    with pytest.raises(MalformedFrame):
        wire.Reassembler().feed(frame)


def test_duplicate_and_inconsistent_fragments_are_rejected():
    frames = wire.encode(DST, SRC, 5, wire.Op.ECHO, bytes(5000))
    r = wire.Reassembler()
    assert r.feed(frames[0]) is None
    with pytest.raises(MalformedFrame, match="duplicate"):
        r.feed(frames[0])
    other = wire.encode(DST, SRC, 5, wire.Op.ECHO, bytes(6000))[1]
    with pytest.raises(MalformedFrame, match="disagrees"):
        r.feed(other)
    for f in frames[1:]:
        msg = r.feed(f)
    assert msg.payload == bytes(5000)


def test_pending_partials_are_bounded():
    r = wire.Reassembler(max_pending=2)
    for rid in range(5):
        r.feed(wire.encode(DST, SRC, rid, wire.Op.ECHO, bytes(5000))[0])
    assert r.pending == 2


def test_request_ids_wrap_and_skip_zero():
    ids = wire.RequestIds(start=0xFFFFFFFF)
    assert [ids.next(), ids.next()] == [0xFFFFFFFF, 1]


def test_stats_and_macs():
    payload = struct.pack(f"<{len(wire.COUNTERS)}I", *range(len(wire.COUNTERS)))
    stats = wire.parse_stats(payload)
    assert stats["rx_frames"] == 0 and stats["dropped"] == 4
    assert wire.format_mac(wire.parse_mac("52:54:00:ab:cd:ef")) == "52:54:00:ab:cd:ef"
    with pytest.raises(ValueError):
        wire.parse_mac("52:54:00")
