"""The host side of the unikernel wire protocol (unikernels/PROTOCOL.md): frames, fragments, reassembly."""

import enum
import os
import struct
import types

from gateway._select import load_fast
from gateway.errors import MalformedFrame

ETHERTYPE = 0x88B5
VERSION = 1
FLAG_REPLY = 0x0001
ETH_LEN = 14
HEADER = struct.Struct("<BBHIIIHHI")    # version op flags req_id total_len frag_off frag_len status now
HEADER_LEN = HEADER.size                # 24
FRAME_MAX = 1514
FRAG_MAX = FRAME_MAX - ETH_LEN - HEADER_LEN   # 1476 payload bytes per frame
MAX_PAYLOAD = 1 << 20
_ETHERTYPE_BYTES = ETHERTYPE.to_bytes(2, "big")
_MIN_FRAME = ETH_LEN + HEADER_LEN
_unpack = HEADER.unpack_from


class Op(enum.IntEnum):
    """Operations; PING and STATS are answered by the guest kernel itself."""

    PING = 0x01
    STATS = 0x02
    ECHO = 0x10
    KV_GET = 0x20
    KV_PUT = 0x21
    KV_DELETE = 0x22
    STATIC_GET = 0x30
    AUTH_VERIFY = 0x40
    AUTH_SETKEY = 0x41
    WEBHOOK_VERIFY = 0x50
    WEBHOOK_SETKEY = 0x51


class Status(enum.IntEnum):
    """Reply statuses."""

    OK = 0
    NOT_FOUND = 1
    BAD_REQUEST = 2
    TOO_LARGE = 3
    UNKNOWN_OP = 4
    NO_MEMORY = 5
    UNAUTHORIZED = 6
    EXPIRED = 7
    NOT_YET_VALID = 8
    NO_KEY = 9
    NOT_MODIFIED = 10


# The order of the u32 counters in a STATS reply; the last four are the service's own.
COUNTERS = (
    "rx_frames", "tx_frames", "requests", "ignored",
    "dropped", "drop_short", "drop_version", "drop_flags",
    "drop_length", "drop_too_big", "drop_offset", "drop_duplicate",
    "drop_inconsistent", "drop_no_memory", "reassembly_evicted", "svc0",
    "svc1", "svc2", "svc3",
)


def parse_mac(text):
    """'52:54:00:12:34:56' -> 6 bytes."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r}")
    return bytes(int(p, 16) for p in parts)


def format_mac(mac):
    """6 bytes -> '52:54:00:12:34:56'."""
    return ":".join(f"{b:02x}" for b in mac)


def encode(dst, src, req_id, op, payload=b"", *, status=0, reply=False, now=0):
    """The frames that carry one message, in offset order."""
    total = len(payload)
    if total > MAX_PAYLOAD:
        raise ValueError(f"payload of {total} bytes exceeds {MAX_PAYLOAD}")
    eth = dst + src + _ETHERTYPE_BYTES
    flags = FLAG_REPLY if reply else 0
    pack = HEADER.pack
    if total <= FRAG_MAX:
        return [eth + pack(VERSION, op, flags, req_id, total, 0, total, status, now) + payload]
    view = memoryview(payload)
    return [eth + pack(VERSION, op, flags, req_id, total, off, min(FRAG_MAX, total - off), status, now)
            + view[off:off + FRAG_MAX]
            for off in range(0, total, FRAG_MAX)]


class Fragment:
    """One decoded frame."""

    __slots__ = ("dst", "src", "op", "flags", "req_id", "total_len", "frag_off", "status", "now", "data")

    def __init__(self, dst, src, op, flags, req_id, total_len, frag_off, status, now, data):
        self.dst, self.src, self.op, self.flags = dst, src, op, flags
        self.req_id, self.total_len, self.frag_off = req_id, total_len, frag_off
        self.status, self.now, self.data = status, now, data


def decode(frame):
    """Check one frame against the protocol and return its Fragment; MalformedFrame if it breaks a rule."""
    n = len(frame)
    if n < ETH_LEN + HEADER_LEN:
        raise MalformedFrame(f"frame of {n} bytes is shorter than the {ETH_LEN + HEADER_LEN}-byte headers")
    if frame[12:14] != _ETHERTYPE_BYTES:
        raise MalformedFrame(f"EtherType 0x{frame[12] << 8 | frame[13]:04x} is not 0x{ETHERTYPE:04x}")
    version, op, flags, req_id, total, off, flen, status, now = HEADER.unpack_from(frame, ETH_LEN)
    if version != VERSION:
        raise MalformedFrame(f"protocol version {version} is not {VERSION}")
    if total > MAX_PAYLOAD:
        raise MalformedFrame(f"total length {total} exceeds {MAX_PAYLOAD}")
    if off > total or off % FRAG_MAX:
        raise MalformedFrame(f"fragment offset {off} is not a multiple of {FRAG_MAX} within {total}")
    if flen != min(FRAG_MAX, total - off) or (off == total and total):
        raise MalformedFrame(f"fragment length {flen} at offset {off} of {total} is wrong")
    end = ETH_LEN + HEADER_LEN + flen
    if end > n:
        raise MalformedFrame(f"frame of {n} bytes is truncated (fragment needs {end})")
    return Fragment(bytes(frame[0:6]), bytes(frame[6:12]), op, flags, req_id, total, off, status, now,
                    bytes(frame[ETH_LEN + HEADER_LEN:end]))


class Message:
    """A whole reassembled message."""

    __slots__ = ("src", "req_id", "op", "status", "flags", "now", "payload")

    def __init__(self, src, req_id, op, status, flags, now, payload):
        self.src, self.req_id, self.op, self.status = src, req_id, op, status
        self.flags, self.now, self.payload = flags, now, payload

    def __repr__(self):
        return (f"Message(req_id={self.req_id}, op={self.op:#x}, status={self.status}, "
                f"payload={len(self.payload)} bytes)")


class _Partial:
    __slots__ = ("frag", "buf", "seen", "missing")

    def __init__(self, frag):
        self.frag = frag
        self.buf = bytearray(frag.total_len)
        self.seen = set()
        self.missing = frag.total_len


class Reassembler:
    """Collects fragments, in any order, into Messages; rejects duplicates and inconsistent fragments."""

    def __init__(self, max_pending=64):
        self.max_pending = max_pending
        self._pending = {}          # (src, req_id) -> _Partial, oldest first

    def feed(self, frame):
        """Take one raw frame; return a Message when it completes one, else None; MalformedFrame if bad."""
        # Fast path for the common case, a whole message in one well-formed frame: same checks as decode().
        if len(frame) >= _MIN_FRAME and frame[12:14] == _ETHERTYPE_BYTES:
            version, op, flags, req_id, total, off, flen, status, now = _unpack(frame, ETH_LEN)
            if version == VERSION and off == 0 and flen == total and total <= FRAG_MAX \
                    and _MIN_FRAME + flen <= len(frame):
                return Message(frame[6:12], req_id, op, status, flags, now, frame[_MIN_FRAME:_MIN_FRAME + flen])
        frag = decode(frame)
        key = (frag.src, frag.req_id)
        part = self._pending.get(key)
        if part is None:
            if len(self._pending) >= self.max_pending:
                # A peer that never finishes must not hold memory forever: drop the oldest.
                del self._pending[next(iter(self._pending))]
            part = self._pending[key] = _Partial(frag)
        else:
            first = part.frag
            if (frag.total_len, frag.op, frag.status, frag.flags) != (first.total_len, first.op, first.status,
                                                                    first.flags):
                raise MalformedFrame(f"fragment of request {frag.req_id} disagrees with its first fragment")
            if frag.frag_off in part.seen:
                raise MalformedFrame(f"duplicate fragment at offset {frag.frag_off} of request {frag.req_id}")
        part.seen.add(frag.frag_off)
        part.buf[frag.frag_off:frag.frag_off + len(frag.data)] = frag.data
        part.missing -= len(frag.data)
        if frag.frag_off == 0:
            part.frag = frag
        if part.missing:
            return None
        del self._pending[key]
        first = part.frag
        return Message(first.src, first.req_id, first.op, first.status, first.flags, first.now, bytes(part.buf))

    def forget(self, src, req_id):
        """Drop a partial message (e.g. its request timed out)."""
        self._pending.pop((src, req_id), None)

    @property
    def pending(self):
        """How many messages are partly received."""
        return len(self._pending)


class RequestIds:
    """Request ids: 32-bit, increasing, never 0, wrapping."""

    def __init__(self, start=1):
        self._next = start

    def next(self):
        """The next request id."""
        rid = self._next
        self._next = rid + 1 if rid < 0xFFFFFFFF else 1
        return rid


def send_frames(fd, frames):
    """Send frames (a list) in order on a non-blocking socket until it is full; how many went.

    OSError when the first one fails; an error after some went is left for the next call to meet.
    """
    sent = 0
    for frame in frames:
        try:
            os.write(fd, frame)
        except BlockingIOError:
            break
        except OSError:
            if sent:
                break
            raise
        sent += 1
    return sent


def receive(fd, reassembler, limit):
    """Read up to limit frames waiting on a non-blocking socket; (complete Messages, malformed frames, frames read)."""
    messages = []
    malformed = count = 0
    while count < limit:
        try:
            frame = os.read(fd, FRAME_MAX + 64)
        except BlockingIOError:
            break
        count += 1
        try:
            msg = reassembler.feed(frame)
        except MalformedFrame:
            malformed += 1
            continue
        if msg is not None:
            messages.append(msg)
    return messages, malformed, count


def parse_stats(payload):
    """A STATS reply payload -> {counter name: value}."""
    count = len(payload) // 4
    values = struct.unpack(f"<{count}I", payload[:count * 4])
    return dict(zip(COUNTERS, values))


# The pure-Python implementation above is the specification; _fastpath/wire.pyx replaces its hot parts
# (same names, same results, same MalformedFrame texts) when it is built.
PY = types.SimpleNamespace(encode=encode, Message=Message, Reassembler=Reassembler, send_frames=send_frames,
                           receive=receive)
FAST = load_fast("wire")
_impl = FAST or PY
encode = _impl.encode
Message = _impl.Message
Reassembler = _impl.Reassembler
send_frames = _impl.send_frames
receive = _impl.receive
IMPLEMENTATION = "compiled" if FAST is not None else "python"
