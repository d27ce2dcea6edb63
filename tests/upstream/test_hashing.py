"""The compiled hashing module agrees with its pure-Python specification."""

import random
import zlib

import pytest

from gateway.upstream import hashing, hashing_py

fast = pytest.importorskip("_fastpath.hashing", reason="build it: cythonize -i -3 _fastpath/hashing.pyx")

IMPLEMENTATIONS = [hashing_py, fast]
KEYS = [b"", b"a", b"/index.html?x=1", bytes(range(256)), "ключ".encode()] + [
    random.Random(seed).randbytes(seed % 40) for seed in range(200)]
NAMES = [b"127.0.0.1:8080", b"backend.local:80", b"unix:/run/app.sock", b"UNIX:/x",
         b"host", b"host:", b"[::1]:8081", b"10.0.0.1", b"a:b:12"]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def impl(request):
    return request.param


def test_selector_exports_one_implementation():
    assert hashing.IMPLEMENTATION in ("gateway.upstream.hashing_py", "_fastpath.hashing")


def test_crc32_is_zlib_crc32(impl):
    assert impl.crc32(b"123456789") == 0xCBF43926
    for key in KEYS:
        assert impl.crc32(key) == zlib.crc32(key)


def test_hash_step_prefixes_the_decimal_rehash_count(impl):
    assert impl.hash_step(b"key", 0) == (zlib.crc32(b"key") >> 16) & 0x7FFF
    assert impl.hash_step(b"key", 12) == (zlib.crc32(b"12key") >> 16) & 0x7FFF


@pytest.mark.parametrize("rehash", [0, 1, 9, 10, 21, 12345])
def test_hash_step_twins_agree(rehash):
    for key in KEYS:
        assert fast.hash_step(key, rehash) == hashing_py.hash_step(key, rehash)


def test_ip_hash_addr(impl):
    assert impl.ip_hash_addr("192.168.7.9") == bytes([192, 168, 7])
    assert impl.ip_hash_addr("::1") == bytes(15) + b"\x01"
    assert len(impl.ip_hash_addr("::ffff:1.2.3.4")) == 16
    for junk in ["", "unix:", "999.1.1.1", "x\0y", "ключ", "1.2.3"]:
        assert impl.ip_hash_addr(junk) == b"\0\0\0"


def test_ip_hash_next_twins_agree():
    rng = random.Random(3)
    for _ in range(500):
        addr = rng.randbytes(rng.choice([3, 16]))
        start = rng.randrange(6271)
        assert fast.ip_hash_next(addr, start) == hashing_py.ip_hash_next(addr, start)
    # Three rounds of (h * 113 + byte) % 6271 from nginx's seed 89.
    assert hashing_py.ip_hash_next(b"\x01\x02\x03", 89) == ((((89 * 113 + 1) % 6271) * 113 + 2)
                                                            % 6271 * 113 + 3) % 6271


def test_ketama_points_twins_agree():
    weights = [1, 2, 3, 1, 1, 2, 1, 1, 4]
    py_points = hashing_py.ketama_points(NAMES, weights)
    assert fast.ketama_points(NAMES, weights) == py_points
    hashes, owners = py_points
    assert list(hashes) == sorted(set(hashes))
    assert len(hashes) == len(owners) <= 160 * sum(weights)


def test_ketama_point_derivation():
    # Point 0 of "10.0.0.1:80" is crc32("10.0.0.1" "\0" "80" 00 00 00 00); point 1 chains it.
    first = zlib.crc32(b"10.0.0.1\x0080\0\0\0\0")
    second = zlib.crc32(b"10.0.0.1\x0080" + first.to_bytes(4, "little"))
    hashes, _ = hashing_py.ketama_points([b"10.0.0.1:80"], [1])
    assert first in hashes and second in hashes
    # A name without a port hashes HOST "\0" with an empty port.
    hashes, _ = hashing_py.ketama_points([b"backend"], [1])
    assert zlib.crc32(b"backend\0\0\0\0\0") in hashes


def test_ketama_find_twins_agree():
    hashes, _ = hashing_py.ketama_points(NAMES, [1] * len(NAMES))
    rng = random.Random(5)
    probes = [0, 1, 2**32 - 1] + list(hashes[:100]) + [rng.getrandbits(32) for _ in range(2000)]
    for value in probes:
        index = hashing_py.ketama_find(hashes, value)
        assert fast.ketama_find(hashes, value) == index
        assert index == len(hashes) or hashes[index] >= value
        assert index == 0 or hashes[index - 1] < value
