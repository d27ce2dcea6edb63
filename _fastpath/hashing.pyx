# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Per-request hash computations for the balancers, compiled.

The specification is gateway/upstream/hashing_py.py; every function here
returns exactly what its twin returns (tests/upstream/test_hashing.py).
"""

from array import array

from libc.stdint cimport uint32_t

cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "sys/socket.h" nogil:
    int AF_INET
    int AF_INET6

cdef uint32_t _table[256]


cdef void _fill_table():
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            # The reflected CRC-32 polynomial used by zlib and nginx.
            c = (0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        _table[n] = c


_fill_table()


cdef inline uint32_t _update(uint32_t crc, const unsigned char *data, Py_ssize_t size) nogil:
    cdef Py_ssize_t i
    for i in range(size):
        crc = _table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8)
    return crc


def crc32(const unsigned char[:] data not None):
    """CRC-32 as nginx's ngx_crc32_long and zlib compute it."""
    if data.shape[0] == 0:
        return 0
    return _update(0xFFFFFFFF, &data[0], data.shape[0]) ^ 0xFFFFFFFF


def hash_step(const unsigned char[:] key not None, Py_ssize_t rehash):
    """One step of nginx's ``hash KEY``: 15 bits of crc32([REHASH] KEY)."""
    cdef uint32_t crc = 0xFFFFFFFF
    cdef bytes prefix
    if rehash > 0:
        prefix = b"%d" % rehash
        crc = _update(crc, <const unsigned char *> prefix, len(prefix))
    if key.shape[0]:
        crc = _update(crc, &key[0], key.shape[0])
    crc ^= 0xFFFFFFFF
    return (crc >> 16) & 0x7FFF


def ip_hash_addr(str remote_addr):
    """The bytes nginx's ip_hash feeds: three IPv4 octets, sixteen IPv6 bytes."""
    cdef unsigned char buf[16]
    cdef bytes text
    try:
        text = remote_addr.encode("ascii")
    except UnicodeEncodeError:
        return b"\0\0\0"
    if b"\0" in text:
        return b"\0\0\0"
    if inet_pton(AF_INET, text, buf) == 1:
        return (<char *> buf)[:3]
    if inet_pton(AF_INET6, text, buf) == 1:
        return (<char *> buf)[:16]
    return b"\0\0\0"


def ip_hash_next(const unsigned char[:] addr not None, Py_ssize_t value):
    """One round of nginx's ip_hash over ``addr`` starting from ``value`` (89 first)."""
    cdef Py_ssize_t i
    for i in range(addr.shape[0]):
        value = (value * 113 + addr[i]) % 6271
    return value


def ketama_points(list names, list weights):
    """nginx's consistent-hash ring: (sorted unique point hashes, owner index of each)."""
    cdef list points = []
    cdef uint32_t base, prev
    cdef unsigned char le[4]
    cdef Py_ssize_t owner, j, count
    cdef bytes name
    for owner in range(len(names)):
        name = names[owner]
        base = _base(name)
        prev = 0
        count = <Py_ssize_t> weights[owner] * 160
        for j in range(count):
            le[0] = prev & 0xFF
            le[1] = (prev >> 8) & 0xFF
            le[2] = (prev >> 16) & 0xFF
            le[3] = (prev >> 24) & 0xFF
            prev = _update(base, le, 4) ^ 0xFFFFFFFF
            points.append((prev, owner))
    points.sort(key=_first)
    hashes, owners = array("I"), array("I")
    last = None
    for value, owner_index in points:
        # nginx keeps one point per hash value.
        if value == last:
            continue
        last = value
        hashes.append(value)
        owners.append(owner_index)
    return hashes, owners


def _first(point):
    return point[0]


cdef uint32_t _base(bytes name):
    """Running (not finalised) crc32 of HOST "\\0" PORT for a name as written."""
    cdef const unsigned char *data = name
    cdef Py_ssize_t size = len(name), host_len = size, port_start = size, j
    cdef unsigned char c
    cdef uint32_t crc = 0xFFFFFFFF
    if size >= 5 and name[:5].lower() == b"unix:":
        crc = _update(crc, data + 5, size - 5)
        return _update(crc, <const unsigned char *> b"\0", 1)
    for j in range(size):
        c = data[size - j - 1]
        if c == b":"[0]:
            host_len = size - j - 1
            port_start = size - j
            break
        if c < b"0"[0] or c > b"9"[0]:
            break
    crc = _update(crc, data, host_len)
    crc = _update(crc, <const unsigned char *> b"\0", 1)
    return _update(crc, data + port_start, size - port_start)


def ketama_find(const unsigned int[:] hashes not None, uint32_t value):
    """Index of the first point >= value (len(hashes) when past the last one)."""
    cdef Py_ssize_t i = 0, j = hashes.shape[0], k
    while i < j:
        k = (i + j) // 2
        if value > hashes[k]:
            i = k + 1
        elif value < hashes[k]:
            j = k
        else:
            return k
    return i
