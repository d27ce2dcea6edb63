"""Fuzz target: frames for one wire Reassembler (unikernels/PROTOCOL.md); only MalformedFrame may escape."""

import atheris

import harness

with atheris.instrument_imports():
    from gateway.errors import MalformedFrame
    from gateway.unikernel import wire

DST = b"\x52\x54\x00\x00\x00\x07"
SRC = b"\x02\x00\x00\x00\x00\x01"
# Input: frames, each a 2-byte little-endian length then that many bytes.
SEEDS = [b"".join(len(f).to_bytes(2, "little") + f
                  for f in wire.encode(DST, SRC, 7, wire.Op.ECHO, bytes(range(256)) * n))
         for n in (0, 1, 7)]


def test_one_input(data: bytes):
    reassembler = wire.Reassembler(max_pending=2)
    pos = 0
    while pos + 2 <= len(data):
        size = int.from_bytes(data[pos:pos + 2], "little")
        frame = data[pos + 2:pos + 2 + size]
        pos += 2 + size
        try:
            message = reassembler.feed(frame)
        except MalformedFrame:
            continue
        if message is not None:
            assert len(message.payload) <= wire.MAX_PAYLOAD
        assert reassembler.pending <= 2


if __name__ == "__main__":
    harness.run(test_one_input, SEEDS)
