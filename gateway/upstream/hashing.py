"""The hashing implementation in use: compiled ``_fastpath.hashing`` or its pure-Python twin."""

from gateway._select import load_fast
from gateway.upstream import hashing_py

_impl = load_fast("hashing") or hashing_py

crc32 = _impl.crc32
hash_step = _impl.hash_step
ip_hash_addr = _impl.ip_hash_addr
ip_hash_next = _impl.ip_hash_next
ketama_points = _impl.ketama_points
ketama_find = _impl.ketama_find
IMPLEMENTATION = _impl.__name__
