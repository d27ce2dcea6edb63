"""Property tests of the wire protocol's host side (unikernels/PROTOCOL.md) on generated frames.

The Reassembler raises nothing but MalformedFrame on arbitrary frames and
arbitrary header fields, and reassembles any valid fragmented messages
delivered in any order, interleaved and among rejected frames.  When the
compiled twin _fastpath/wire.pyx is in the tree, every property runs on both.
"""

import importlib
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import MalformedFrame
from gateway.unikernel import wire as wire_py

COMPILED = pathlib.Path(__file__).resolve().parents[2] / "_fastpath" / "wire.pyx"
IMPLEMENTATIONS = ["python"] + (["cython"] if COMPILED.exists() else [])


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def wire(request):
    """gateway.unikernel.wire, or _fastpath.wire when it is in the tree (then it must be built)."""
    if request.param == "python":
        return wire_py
    try:
        return importlib.import_module("_fastpath.wire")
    except ImportError as exc:
        pytest.fail(f"_fastpath/wire.pyx is not built ({exc}): run `make extensions`")


mac = st.binary(min_size=6, max_size=6)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
F = wire_py.FRAG_MAX
# Header values around every limit decode() checks.
total_len = st.one_of(st.integers(0, 4 * F + 2), st.sampled_from(
    [F - 1, F, F + 1, wire_py.MAX_PAYLOAD - 1, wire_py.MAX_PAYLOAD, wire_py.MAX_PAYLOAD + 1,
     0xFFFFFFFF]), u32)
offset = st.one_of(st.integers(0, 4).map(lambda k: k * F), st.integers(0, 4 * F + 2), u32)


@st.composite
def frames(draw):
    """A frame whose header fields are drawn around the protocol's limits, or any bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=80))
    total = draw(total_len)
    off = draw(offset)
    flen = draw(st.one_of(st.just(max(0, min(F, total - off))), st.integers(0, F + 1), u16))
    data_len = draw(st.one_of(st.just(flen), st.integers(0, min(flen + 2, 3 * F))))
    ethertype = draw(st.sampled_from([wire_py.ETHERTYPE, wire_py.ETHERTYPE, 0x0800, 0xB588]))
    header = wire_py.HEADER.pack(draw(st.sampled_from([1, 1, 1, 0, 2, 255])),
                                 draw(st.integers(0, 255)), draw(u16), draw(st.integers(0, 3)),
                                 total, off & 0xFFFFFFFF, flen, draw(u16), draw(u32))
    return (draw(mac) + draw(st.sampled_from([b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"]))
            + ethertype.to_bytes(2, "big") + header + bytes(data_len))


@given(frame_list=st.lists(frames(), max_size=12), max_pending=st.integers(1, 3))
def test_any_frames_raise_only_malformed_frame(wire, frame_list, max_pending):
    reassembler = wire.Reassembler(max_pending=max_pending)
    for frame in frame_list:
        try:
            message = reassembler.feed(frame)
        except MalformedFrame:
            continue
        if message is not None:
            assert len(message.payload) <= wire_py.MAX_PAYLOAD
        assert reassembler.pending <= max_pending


@given(st.binary(max_size=2 * F))
def test_any_bytes_raise_only_malformed_frame(wire, data):
    try:
        wire.Reassembler().feed(data)
    except MalformedFrame:
        pass


@st.composite
def messages(draw):
    """Messages with distinct (src, req_id): (src, req_id, op, payload, status, reply, now)."""
    count = draw(st.integers(1, 4))
    keys = draw(st.lists(st.tuples(st.sampled_from([b"\x02\x00\x00\x00\x00\x01",
                                                    b"\x02\x00\x00\x00\x00\x02"]), u32),
                         min_size=count, max_size=count, unique=True))
    out = []
    for src, req_id in keys:
        size = draw(st.one_of(st.integers(0, 4 * F + 1),
                              st.sampled_from([0, 1, F - 1, F, F + 1, 2 * F, 2 * F + 1])))
        payload = draw(st.binary(min_size=min(size, 16), max_size=min(size, 16))) * (size // 16 + 1)
        out.append((src, req_id, draw(st.sampled_from(list(wire_py.Op))), payload[:size],
                    draw(u16), draw(st.booleans()), draw(u32)))
    return out


def rejected_frame(draw_bytes):
    """A frame every twin must refuse: too short or of another EtherType."""
    return draw_bytes[:37] if len(draw_bytes) < 38 else draw_bytes[:12] + b"\x08\x00" + draw_bytes[14:]


@given(messages(), st.randoms(use_true_random=False), st.lists(st.binary(max_size=60), max_size=3))
def test_fragments_in_any_order_reassemble(wire, message_list, rng, noise):
    dst = b"\x52\x54\x00\x00\x00\x07"
    sent = {}
    every = []
    for src, req_id, op, payload, status, reply, now in message_list:
        frames_of = wire.encode(dst, src, req_id, op, payload, status=status, reply=reply, now=now)
        assert [len(f) for f in frames_of[:-1]] == [wire_py.FRAME_MAX] * (len(frames_of) - 1)
        sent[(src, req_id)] = (op, status, wire_py.FLAG_REPLY if reply else 0, now, payload)
        every.extend(bytes(f) for f in frames_of)
    rng.shuffle(every)
    for junk in noise:
        every.insert(rng.randrange(len(every) + 1), rejected_frame(junk))

    reassembler = wire.Reassembler()
    got = {}
    for frame in every:
        try:
            message = reassembler.feed(frame)
        except MalformedFrame:
            assert frame[12:14] != b"\x88\xb5" or len(frame) < 38
            continue
        if message is not None:
            key = (bytes(message.src), message.req_id)
            assert key not in got
            got[key] = (message.op, message.status, message.flags, message.now, bytes(message.payload))
    assert got == sent
    assert reassembler.pending == 0
