"""Per-request hash computations for the balancers: the pure-Python specification.

``_fastpath/hashing.pyx`` implements the same functions and must agree with
these bit for bit (tests/upstream/test_hashing.py runs both).
"""

from __future__ import annotations

import socket
import zlib
from array import array
from bisect import bisect_left

# nginx hashes a non-IP client (a unix socket) as if it were 0.0.0.x.
_PSEUDO_ADDR = b"\0\0\0"


def crc32(data: bytes) -> int:
    """CRC-32 as nginx's ngx_crc32_long and zlib compute it."""
    return zlib.crc32(data)


def hash_step(key: bytes, rehash: int) -> int:
    """One step of nginx's ``hash KEY``: 15 bits of crc32([REHASH] KEY)."""
    # Cache::Memcached compatible: the decimal rehash count prefixes the key
    # from the second round on.
    data = b"%d%b" % (rehash, key) if rehash > 0 else key
    return (zlib.crc32(data) >> 16) & 0x7FFF


def ip_hash_addr(remote_addr: str) -> bytes:
    """The bytes nginx's ip_hash feeds: three IPv4 octets, sixteen IPv6 bytes."""
    try:
        return socket.inet_pton(socket.AF_INET, remote_addr)[:3]
    except (OSError, ValueError):
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, remote_addr)
    except (OSError, ValueError):
        return _PSEUDO_ADDR


def ip_hash_next(addr: bytes, value: int) -> int:
    """One round of nginx's ip_hash over ``addr`` starting from ``value`` (89 first)."""
    for byte in addr:
        value = (value * 113 + byte) % 6271
    return value


def ketama_points(names: list[bytes], weights: list[int]) -> tuple[array, array]:
    """nginx's consistent-hash ring: (sorted unique point hashes, owner index of each).

    Each server gets ``weight * 160`` points; point j is
    crc32(HOST "\\0" PORT prev) where prev is point j-1 as 4 little-endian bytes
    (0 for the first), HOST/PORT split at a trailing ``:digits`` of the name as written.
    """
    points = []
    for owner, (name, weight) in enumerate(zip(names, weights)):
        base = _ketama_base(name)
        prev = 0
        for _ in range(weight * 160):
            prev = zlib.crc32(prev.to_bytes(4, "little"), base)
            points.append((prev, owner))
    return ring_arrays(points)


def ring_arrays(points: list[tuple[int, int]]) -> tuple[array, array]:
    """(hash, owner) points -> sorted hashes and their owners, one point per hash value (nginx)."""
    points.sort(key=lambda point: point[0])
    hashes, owners = array("I"), array("I")
    for value, owner in points:
        if hashes and hashes[-1] == value:
            continue
        hashes.append(value)
        owners.append(owner)
    return hashes, owners


def _ketama_base(name: bytes) -> int:
    """Running crc32 of HOST "\\0" PORT for a server name as written."""
    if name[:5].lower() == b"unix:":
        host, port = name[5:], b""
    else:
        host, port = name, b""
        digits = len(name) - len(name.rstrip(b"0123456789"))
        colon = len(name) - digits - 1
        if colon >= 0 and name[colon:colon + 1] == b":":
            host, port = name[:colon], name[colon + 1:]
    return zlib.crc32(port, zlib.crc32(b"\0", zlib.crc32(host)))


def ketama_find(hashes: array, value: int) -> int:
    """Index of the first point >= value (len(hashes) when past the last one)."""
    return bisect_left(hashes, value)
