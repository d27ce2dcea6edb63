"""The shared zones of limit_req and limit_conn: nginx's arithmetic, a full bucket, and counts
that another process (a forked worker) sees."""

import os

from gateway.http import zones


def req_zone(size=32768, rate=1000):
    return zones.LimitReqZone("z", "$binary_remote_addr", size, rate)


def test_leaky_bucket_as_nginx():
    zone = req_zone(rate=2000)          # 2r/s
    assert zone.lookup(b"k", 2000, True, 10_000)[:2] == (zones.OK, 0)     # a new key: excess 0
    assert zone.lookup(b"k", 2000, True, 10_000)[:2] == (zones.OK, 1000)
    assert zone.lookup(b"k", 2000, True, 10_000)[:2] == (zones.OK, 2000)
    assert zone.lookup(b"k", 2000, True, 10_000)[:2] == (zones.BUSY, 3000)  # not stored
    # 250 ms drain 500 milli-requests.
    assert zone.lookup(b"k", 2000, True, 10_250)[:2] == (zones.BUSY, 2500)
    assert zone.lookup(b"k", 5000, True, 10_250)[:2] == (zones.OK, 2500)
    # A clock that went back less than a minute counts as no time; more, as 1 ms.
    assert zone.lookup(b"k", 5000, True, 10_000)[:2] == (zones.OK, 3500)
    assert zone.lookup(b"k", 5000, True, 10_250 - 70_000)[:2] == (zones.OK, 4498)


def test_held_entries_are_accounted_later():
    zone = req_zone()
    rc, excess, offset = zone.lookup(b"new", 0, False, 5000)
    assert (rc, excess) == (zones.AGAIN, 0)
    assert zone.account(offset, 5000) == 0          # a new held entry: drained from time 0
    rc, excess, offset = zone.lookup(b"new", 5000, False, 5000)
    assert (rc, excess) == (zones.AGAIN, 1000)
    assert zone.account(offset, 5000) == 1000
    rc, _, offset = zone.lookup(b"new", 5000, False, 5000)
    zone.unhold(offset)                             # refused by a later limit: not counted
    assert zone.lookup(b"new", 5000, True, 5000)[:2] == (zones.OK, 2000)


def test_a_full_bucket_forgets_its_least_recently_used_key():
    zone = req_zone()
    keys = [k for k in (b"%d" % i for i in range(100000))
            if zones.zlib.crc32(k) % zone.buckets == 0][:zones.WAYS + 1]
    for when, key in enumerate(keys[:-1]):
        zone.lookup(key, 10_000, True, 1000 + when)
        zone.lookup(key, 10_000, True, 1000 + when)          # excess 1000 each
    zone.lookup(keys[1], 10_000, True, 2000)                 # keys[0] is now the oldest
    zone.lookup(keys[-1], 10_000, True, 2001)                # a ninth key in the bucket
    assert zone.lookup(keys[2], 10_000, True, 2002)[1] > 0                  # kept
    assert zone.lookup(keys[0], 10_000, True, 2003)[:2] == (zones.OK, 0)   # forgotten: new


def test_limit_conn_full_bucket_refuses_and_counts_come_back():
    zone = zones.LimitConnZone("c", "$binary_remote_addr", 32768)
    keys = [k for k in (b"%d" % i for i in range(100000))
            if zones.zlib.crc32(k) % zone.buckets == 0][:zones.WAYS + 1]
    offsets = [zone.take(key, 1, 0) for key in keys[:-1]]
    assert zone.take(keys[0], 1, 0) == zones.BUSY
    assert zone.take(keys[-1], 1, 0) is None                 # "could not allocate node"
    zone.give_back(offsets[3])
    assert zone.connections(keys[3]) == 0
    assert isinstance(zone.take(keys[-1], 1, 0), int)        # its place is free again


def test_counts_are_shared_with_a_forked_worker():
    zone = zones.LimitConnZone("c", "$binary_remote_addr", 32768)
    pid = os.fork()
    if pid == 0:
        code = 0 if isinstance(zone.take(b"client", 5, 0), int) else 1
        code |= 0 if isinstance(zone.take(b"client", 5, 0), int) else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert zone.connections(b"client") == 2


def test_long_keys_are_kept_apart():
    zone = zones.LimitConnZone("c", "$http_x", 32768)
    long_a, long_b = b"a" * 300, b"a" * 299 + b"b"
    zone.take(long_a, 1, 0)
    assert zone.connections(long_a) == 1 and zone.connections(long_b) == 0


def test_a_lock_left_held_by_a_dead_worker_is_taken_over(monkeypatch):
    zone = zones.LimitConnZone("c", "$binary_remote_addr", 32768)
    monkeypatch.setattr(zones, "LOCK_TIMEOUT", 0.05)
    pid = os.fork()
    if pid == 0:
        zone.lock.acquire()
        os._exit(0)          # dies holding it
    os.waitpid(pid, 0)
    assert isinstance(zone.take(b"k", 1, 0), int)       # after the timeout, taken over
    assert zone.connections(b"k") == 1                  # and usable again right away
