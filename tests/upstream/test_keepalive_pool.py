"""The keep-alive cache of idle upstream connections (KeepalivePool), on a real event loop.

The connections here are small stand-ins: the pool only reads their peer, counters and
``transport.is_closing()``, and calls ``close()``; a real connection's close() likewise
makes the pool forget it.
"""

import asyncio

from gateway.http import upstream_connection
from gateway.http.upstream_connection import KeepalivePool


class Transport:
    def __init__(self):
        self.closed = False

    def is_closing(self):
        return self.closed


class Conn:
    def __init__(self, pool, peer, name):
        self.pool, self.peer, self.name = pool, peer, name
        self.transport = Transport()
        self.exchange = None
        self.closed = False
        self.requests = 1
        self.reused = False
        self.idle_since = 0.0

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.closed = True
            self.pool.forget(self)


def test_without_a_loop_the_least_recently_used_beyond_size_is_closed_at_once():
    pool = KeepalivePool(2, 60.0, 100)
    conns = [Conn(pool, "p", n) for n in "abc"]
    for conn in conns:
        pool.put(conn, 0.0)
    assert [c.closed for c in conns] == [True, False, False]
    assert pool.take("p").name == "c"          # most recently used first


def test_with_a_loop_the_excess_stays_usable_until_idle_for_the_trim_delay(monkeypatch):
    monkeypatch.setattr(upstream_connection, "TRIM_DELAY", 0.2)

    async def scenario():
        loop = asyncio.get_running_loop()
        pool = KeepalivePool(2, 60.0, 100, loop)
        conns = [Conn(pool, "p", n) for n in "abcde"]
        for conn in conns[:4]:                 # four responses in one iteration...
            pool.put(conn, loop.time())
        assert not any(c.closed for c in conns)
        taken = pool.take("p")                 # ...and a request read in the same one
        assert taken.name == "d" and taken.reused
        for _ in range(3):                     # iterations end: all three still kept
            await asyncio.sleep(0)
        assert not any(c.closed for c in conns) and len(pool.idle) == 3
        await asyncio.sleep(0.1)
        pool.put(conns[4], loop.time())        # released later: younger than a, b, c
        await asyncio.sleep(0.15)              # a and b idle for the delay: back to size
        return pool, conns
    pool, conns = asyncio.run(scenario())
    assert [c.closed for c in conns] == [True, True, False, False, False]
    assert list(pool.idle) == [conns[2], conns[4]]
    assert not pool.trim_pending


def test_one_trim_is_scheduled_however_many_connections_overflow():
    calls = []

    class CountingLoop:
        def call_soon(self, callback):
            calls.append(callback)

        def time(self):
            return 100.0      # every connection below has been idle since 0.0

    pool = KeepalivePool(1, 60.0, 100, CountingLoop())
    conns = [Conn(pool, "p", n) for n in "abcde"]
    for conn in conns:
        pool.put(conn, 0.0)
    assert len(calls) == 1 and len(pool.idle) == 5
    calls[0]()
    assert [c.closed for c in conns] == [True, True, True, True, False]


class Waiter:
    """An exchange as the pool sees it while it waits for a connection."""

    def __init__(self, pool, peer):
        self.waiting = True
        self.got = None
        self.turns = 0
        pool.wait(peer, self)

    def take_connection(self, conn, now):
        self.got = conn

    def connect_waited(self, peer):
        self.turns += 1


def test_connections_being_opened_are_capped_per_peer():
    pool = KeepalivePool(2, 60.0, 100)
    for _ in range(upstream_connection.CONNECT_LIMIT):
        assert pool.may_connect("p")
        pool.connect_started("p")
    assert not pool.may_connect("p") and pool.may_connect("q")
    pool.connect_done("p")
    assert pool.may_connect("p")


def test_a_connection_given_back_goes_to_the_first_request_still_waiting():
    pool = KeepalivePool(2, 60.0, 100)
    gone, first, second = Waiter(pool, "p"), Waiter(pool, "p"), Waiter(pool, "p")
    gone.waiting = False                    # timed out or abandoned meanwhile
    conn = Conn(pool, "p", "a")
    pool.put(conn, 1.0)
    assert (gone.got, first.got, second.got) == (None, conn, None)
    assert conn.reused and not first.waiting and second.waiting
    assert pool.take("p") is None           # handed over, not idle


def test_a_finished_connect_gives_the_next_waiter_its_turn():
    pool = KeepalivePool(2, 60.0, 100)
    pool.connect_started("p")
    first, second = Waiter(pool, "p"), Waiter(pool, "p")
    pool.connect_done("p")
    assert (first.turns, second.turns) == (1, 0) and second.waiting
    pool.connect_done("p")                  # one more than started: the count stays at 0
    assert second.turns == 1 and pool.may_connect("p") and not pool.waiting
