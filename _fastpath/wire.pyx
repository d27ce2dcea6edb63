# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The host side of the unikernel wire protocol, compiled: encode, Reassembler, batched link I/O.

The specification is gateway/unikernel/wire.py: for the same frames both give the same Messages and
raise MalformedFrame with the same text. Frames read in a batch (recvmmsg) are checked and reassembled
from C buffers; only a complete message becomes a Python object.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset, strerror

from gateway.errors import MalformedFrame

__all__ = ["encode", "Message", "Reassembler", "send_frames", "receive"]


cdef extern from "<sys/uio.h>":
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>":
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int sendmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags) nogil
    int recvmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags, void *timeout) nogil
    enum: MSG_DONTWAIT


# The protocol's constants, as in the twin.
DEF ETH_LEN = 14
DEF HEADER_LEN = 24
DEF MIN_FRAME = 38
DEF FRAME_MAX = 1514
DEF FRAG_MAX = 1476
DEF MAX_PAYLOAD = 1048576
DEF VERSION = 1
DEF FLAG_REPLY = 1
# A receive buffer as large as the twin's recv(FRAME_MAX + 64): longer datagrams are cut the same way.
DEF RX_BUF = 1578
# Frames per system call.
DEF BATCH = 64

cdef uint8_t rx_bufs[BATCH][RX_BUF]
cdef iovec rx_iov[BATCH]
cdef mmsghdr rx_msgs[BATCH]
cdef iovec tx_iov[BATCH]
cdef mmsghdr tx_msgs[BATCH]


cdef inline uint16_t _u16(const uint8_t *p) noexcept:
    return p[0] | (<uint16_t>p[1] << 8)


cdef inline uint32_t _u32(const uint8_t *p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline void _put16(uint8_t *p, uint32_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _put32(uint8_t *p, uint32_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _header(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint32_t op, uint32_t flags,
                         uint32_t req_id, uint32_t total, uint32_t off, uint32_t flen, uint32_t status,
                         uint32_t now) noexcept:
    memcpy(p, dst, 6)
    memcpy(p + 6, src, 6)
    p[12] = 0x88
    p[13] = 0xB5
    p[14] = VERSION
    p[15] = op
    _put16(p + 16, flags)
    _put32(p + 18, req_id)
    _put32(p + 22, total)
    _put32(p + 26, off)
    _put16(p + 30, flen)
    _put16(p + 32, status)
    _put32(p + 34, now)


def encode(dst, src, req_id, op, payload=b"", *, status=0, reply=False, now=0):
    """The frames that carry one message, in offset order."""
    cdef const uint8_t[::1] data
    cdef const uint8_t *pp
    cdef Py_ssize_t total
    if type(payload) is bytes:
        pp = <const uint8_t *>PyBytes_AS_STRING(payload)
        total = PyBytes_GET_SIZE(payload)
    else:
        data = payload
        total = data.shape[0]
        pp = &data[0] if total else NULL
    if total > MAX_PAYLOAD:
        raise ValueError(f"payload of {total} bytes exceeds {MAX_PAYLOAD}")
    cdef bytes d = bytes(dst), s = bytes(src)
    if len(d) != 6 or len(s) != 6:
        raise ValueError("a MAC address is 6 bytes")
    # The same ranges struct.pack("<BBHIIIHHI") accepts.
    if not (0 <= op <= 0xFF and 0 <= req_id <= 0xFFFFFFFF and 0 <= status <= 0xFFFF and 0 <= now <= 0xFFFFFFFF):
        raise OverflowError("a header field is out of range")
    return _encode(d, s, req_id, op, pp, total, status, FLAG_REPLY if reply else 0, now)


cdef list encode_frames(bytes dst, bytes src, uint32_t req_id, uint32_t op, bytes payload, uint32_t now):
    """encode() of a request for the pool (payload within MAX_PAYLOAD: the caller checked)."""
    if PyBytes_GET_SIZE(dst) != 6 or PyBytes_GET_SIZE(src) != 6:
        raise ValueError("a MAC address is 6 bytes")
    return _encode(dst, src, req_id, op, <const uint8_t *>PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                   0, 0, now)


cdef list _encode(bytes d, bytes s, uint32_t c_rid, uint32_t c_op, const uint8_t *pp, Py_ssize_t total,
                  uint32_t c_status, uint32_t flags, uint32_t c_now):
    cdef const uint8_t *pd = <const uint8_t *>PyBytes_AS_STRING(d)
    cdef const uint8_t *ps = <const uint8_t *>PyBytes_AS_STRING(s)
    cdef Py_ssize_t off = 0, flen
    cdef bytes frame
    cdef uint8_t *p
    cdef list frames = []
    while True:
        flen = total - off if total - off < FRAG_MAX else FRAG_MAX
        frame = PyBytes_FromStringAndSize(NULL, MIN_FRAME + flen)
        p = <uint8_t *>PyBytes_AS_STRING(frame)
        _header(p, pd, ps, c_op, flags, c_rid, <uint32_t>total, <uint32_t>off, <uint32_t>flen, c_status, c_now)
        if flen:
            memcpy(p + MIN_FRAME, pp + off, flen)
        frames.append(frame)
        off += flen
        if off >= total:
            return frames


@cython.no_gc
cdef class Message:
    """A whole reassembled message (fields declared in wire.pxd)."""

    def __init__(self, src, req_id, op, status, flags, now, payload):
        self.src, self.req_id, self.op, self.status = src, req_id, op, status
        self.flags, self.now, self.payload = flags, now, payload

    def __repr__(self):
        return (f"Message(req_id={self.req_id}, op={self.op:#x}, status={self.status}, "
                f"payload={len(self.payload)} bytes)")


cdef inline Message _message(bytes src, uint32_t req_id, int op, int status, int flags, uint32_t now,
                             bytes payload):
    cdef Message m = Message.__new__(Message)
    m.src = src
    m.req_id = req_id
    m.op = op
    m.status = status
    m.flags = flags
    m.now = now
    m.payload = payload
    return m


# Why a frame is malformed; the twin's messages are rebuilt from these only when one is raised.
cdef enum:
    OK_FRAME = 0
    E_SHORT
    E_ETHERTYPE
    E_VERSION
    E_TOO_BIG
    E_OFFSET
    E_LENGTH
    E_TRUNCATED
    E_INCONSISTENT
    E_DUPLICATE


cdef object _error(int code, const uint8_t *p, Py_ssize_t n):
    """The MalformedFrame the twin raises for this frame, word for word."""
    if code == E_SHORT:
        return MalformedFrame(f"frame of {n} bytes is shorter than the {MIN_FRAME}-byte headers")
    if code == E_ETHERTYPE:
        return MalformedFrame(f"EtherType 0x{p[12] << 8 | p[13]:04x} is not 0x88b5")
    if code == E_VERSION:
        return MalformedFrame(f"protocol version {p[14]} is not {VERSION}")
    cdef uint32_t total = _u32(p + 22), off = _u32(p + 26), flen = _u16(p + 30), rid = _u32(p + 18)
    if code == E_TOO_BIG:
        return MalformedFrame(f"total length {total} exceeds {MAX_PAYLOAD}")
    if code == E_OFFSET:
        return MalformedFrame(f"fragment offset {off} is not a multiple of {FRAG_MAX} within {total}")
    if code == E_LENGTH:
        return MalformedFrame(f"fragment length {flen} at offset {off} of {total} is wrong")
    if code == E_TRUNCATED:
        return MalformedFrame(f"frame of {n} bytes is truncated (fragment needs {MIN_FRAME + flen})")
    if code == E_INCONSISTENT:
        return MalformedFrame(f"fragment of request {rid} disagrees with its first fragment")
    return MalformedFrame(f"duplicate fragment at offset {off} of request {rid}")


cdef int _check(const uint8_t *p, Py_ssize_t n) noexcept:
    """decode()'s checks, in its order."""
    if n < MIN_FRAME:
        return E_SHORT
    if p[12] != 0x88 or p[13] != 0xB5:
        return E_ETHERTYPE
    if p[14] != VERSION:
        return E_VERSION
    cdef uint32_t total = _u32(p + 22), off = _u32(p + 26), flen = _u16(p + 30)
    if total > MAX_PAYLOAD:
        return E_TOO_BIG
    if off > total or off % FRAG_MAX:
        return E_OFFSET
    cdef uint32_t want = total - off if total - off < FRAG_MAX else FRAG_MAX
    if flen != want or (off == total and total):
        return E_LENGTH
    if MIN_FRAME + <Py_ssize_t>flen > n:
        return E_TRUNCATED
    return OK_FRAME


@cython.no_gc
cdef class _Partial:
    cdef bytes buf              # filled in place, handed out once complete (nobody else sees it before)
    cdef uint8_t *seen          # one byte per fragment index
    cdef bytes src
    cdef uint32_t req_id, total_len, now, missing
    cdef int op, status, flags

    def __dealloc__(self):
        if self.seen != NULL:
            PyMem_Free(self.seen)


cdef class Reassembler:
    """Collects fragments, in any order, into Messages; rejects duplicates and inconsistent fragments."""

    def __init__(self, max_pending=64):
        self.max_pending = max_pending
        self._pending = {}

    def feed(self, frame):
        """Take one raw frame; return a Message when it completes one, else None; MalformedFrame if bad."""
        cdef const uint8_t[::1] view = frame
        cdef Py_ssize_t n = view.shape[0]
        cdef int code = 0
        if n == 0:
            raise _error(E_SHORT, NULL, 0)
        msg = self._feed(&view[0], n, &code)
        if code:
            raise _error(code, &view[0], n)
        return msg

    cdef object _feed(self, const uint8_t *p, Py_ssize_t n, int *code):
        """A Message, or None with *code 0 (more to come) or the reason the frame is malformed."""
        cdef int c = _check(p, n)
        if c:
            code[0] = c
            return None
        cdef uint32_t total = _u32(p + 22), off = _u32(p + 26), flen = _u16(p + 30)
        cdef int op = p[15], flags = _u16(p + 16), status = _u16(p + 32)
        cdef uint32_t rid = _u32(p + 18), now = _u32(p + 34)
        if off == 0 and flen == total:
            # A whole message in one frame: the twin's fast path, which never looks at _pending.
            return _message(PyBytes_FromStringAndSize(<const char *>p + 6, 6), rid, op, status, flags, now,
                            PyBytes_FromStringAndSize(<const char *>p + MIN_FRAME, flen))
        src = PyBytes_FromStringAndSize(<const char *>p + 6, 6)
        key = (src, rid)
        cdef _Partial part = self._pending.get(key)
        cdef uint32_t index = off // FRAG_MAX
        if part is None:
            if len(self._pending) >= self.max_pending:
                # A peer that never finishes must not hold memory forever: drop the oldest.
                del self._pending[next(iter(self._pending))]
            part = _Partial.__new__(_Partial)
            part.buf = PyBytes_FromStringAndSize(NULL, total)
            part.seen = <uint8_t *>PyMem_Malloc(total // FRAG_MAX + 1)
            if part.seen == NULL:
                raise MemoryError()
            memset(part.seen, 0, total // FRAG_MAX + 1)
            part.src, part.req_id, part.total_len, part.now = src, rid, total, now
            part.op, part.status, part.flags, part.missing = op, status, flags, total
            self._pending[key] = part
        else:
            if total != part.total_len or op != part.op or status != part.status or flags != part.flags:
                code[0] = E_INCONSISTENT
                return None
            if part.seen[index]:
                code[0] = E_DUPLICATE
                return None
        part.seen[index] = 1
        memcpy(PyBytes_AS_STRING(part.buf) + off, p + MIN_FRAME, flen)
        part.missing -= flen
        if off == 0:
            part.now = now      # the fragment at offset 0 carries the message's clock
        if part.missing:
            return None
        del self._pending[key]
        return _message(part.src, part.req_id, part.op, part.status, part.flags, part.now, part.buf)

    def forget(self, src, req_id):
        """Drop a partial message (e.g. its request timed out)."""
        self._pending.pop((bytes(src), req_id), None)

    @property
    def pending(self):
        """How many messages are partly received."""
        return len(self._pending)


def receive(int fd, Reassembler reassembler, Py_ssize_t limit):
    """Read up to limit frames waiting on fd; (complete Messages, malformed frames, frames read).

    One recvmmsg per 64 frames; a short batch means the socket is empty, so no call ends in EAGAIN
    unless the previous one was full.
    """
    cdef list out = []
    cdef Py_ssize_t malformed = 0
    cdef Py_ssize_t count = receive_into(fd, reassembler, limit, out, &malformed)
    return out, malformed, count


cdef Py_ssize_t receive_into(int fd, Reassembler reassembler, Py_ssize_t limit, list out,
                             Py_ssize_t *malformed) except -1:
    """receive() appending to out and adding to *malformed; the number of frames read."""
    cdef Py_ssize_t count = 0
    cdef int n, i, want, code
    while count < limit:
        want = BATCH if limit - count > BATCH else <int>(limit - count)
        for i in range(want):
            rx_msgs[i].msg_hdr.msg_flags = 0
            rx_msgs[i].msg_len = 0
        n = recvmmsg(fd, rx_msgs, want, MSG_DONTWAIT, NULL)
        if n < 0:
            if errno == EAGAIN:
                break
            if errno == EINTR:
                continue
            raise OSError(errno, strerror(errno).decode())
        for i in range(n):
            count += 1
            code = 0
            msg = reassembler._feed(rx_bufs[i], rx_msgs[i].msg_len, &code)
            if code:
                malformed[0] += 1
            elif msg is not None:
                out.append(msg)
        if n < want:
            break
    return count


def send_frames(int fd, list frames):
    """Send frames in order until the socket is full; how many went. OSError if the first one fails."""
    return send_list(fd, frames)


cdef Py_ssize_t send_list(int fd, list frames) except -1:
    cdef Py_ssize_t total = len(frames), sent = 0, i
    cdef int batch, r
    cdef object frame
    while sent < total:
        batch = BATCH if total - sent > BATCH else <int>(total - sent)
        for i in range(batch):
            frame = frames[sent + i]
            if type(frame) is not bytes:
                frame = bytes(frame)
                frames[sent + i] = frame
            tx_iov[i].iov_base = PyBytes_AS_STRING(frame)
            tx_iov[i].iov_len = PyBytes_GET_SIZE(frame)
        r = sendmmsg(fd, tx_msgs, batch, MSG_DONTWAIT)
        if r < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN or sent:
                return sent
            raise OSError(errno, strerror(errno).decode())
        sent += r
        if r < batch:
            # The socket filled up (or the next frame fails): the caller waits for writability.
            if r == 0:
                return sent
    return sent


cdef void _init_vectors() noexcept:
    cdef int i
    memset(rx_msgs, 0, sizeof(rx_msgs))
    memset(tx_msgs, 0, sizeof(tx_msgs))
    for i in range(BATCH):
        rx_iov[i].iov_base = rx_bufs[i]
        rx_iov[i].iov_len = RX_BUF
        rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i]
        rx_msgs[i].msg_hdr.msg_iovlen = 1
        tx_msgs[i].msg_hdr.msg_iov = &tx_iov[i]
        tx_msgs[i].msg_hdr.msg_iovlen = 1


_init_vectors()
