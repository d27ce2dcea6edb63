"""Connections to HTTP upstreams and the per-worker keep-alive cache of idle ones."""

from __future__ import annotations

import asyncio
from collections import deque


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a peer; forwards events to the exchange using it."""

    __slots__ = ("pool", "peer", "transport", "exchange", "reused", "requests",
                 "idle_since", "closed")

    def __init__(self, pool, peer):
        self.pool = pool
        self.peer = peer
        self.transport = None
        self.exchange = None
        self.reused = False
        self.requests = 0
        self.idle_since = 0.0
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport     # TCP_NODELAY: set by uvloop and asyncio already

    def data_received(self, data):
        if self.exchange is not None:
            self.exchange.upstream_data(data)
        else:
            self.close()   # an idle connection must stay silent

    def eof_received(self):
        if self.exchange is not None:
            self.exchange.upstream_eof()
        else:
            self.close()
        return False

    def connection_lost(self, exc):
        self.closed = True
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            exchange.upstream_lost(exc)
        else:
            self.pool.forget(self)

    def pause_writing(self):
        if self.exchange is not None:
            self.exchange.upstream_write_paused()

    def resume_writing(self):
        if self.exchange is not None:
            self.exchange.upstream_write_resumed()

    def close(self):
        if not self.closed:
            self.closed = True
            self.exchange = None
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


# How long an idle upstream connection beyond ``keepalive N`` is kept for reuse before it is
# closed (HAProxy likewise purges idle server connections gradually: pool-purge-delay).
TRIM_DELAY = 1.0
# At most this many connections being opened to one server at once while it has a keep-alive
# pool: a request beyond them waits for the first connection that comes back to the pool or
# finishes opening (HAProxy queues requests for a server likewise). Thousands of connects at
# once (5,000 clients arriving together) took seconds each to complete; 64 at a time do not
# (bench/RESULTS.md "c5000"). 64 connects per round trip still ramp a far server quickly.
CONNECT_LIMIT = 64


class KeepalivePool:
    """Idle connections of one upstream, at most ``size`` in all (nginx's LRU cache).

    With a ``loop``, the least recently used beyond ``size`` are closed once they have been
    idle for TRIM_DELAY, not at once: a request read soon after takes one of them instead
    of opening a new connection while an idle one is being closed. Under 1,000 concurrent
    clients over ``keepalive 64``, closing at the end of the iteration already cut new
    upstream connections from 0.76 to 0.04 per request; at 5,000 that still churned 0.14
    per request, and each new connection waited in the backend's accept queue (seconds of
    p99, bench/RESULTS.md "Tail latency"). Without a loop the excess is closed at once, as
    nginx does.
    """

    def __init__(self, size: int, timeout: float, max_requests: int, loop=None):
        self.size = size
        self.timeout = timeout
        self.max_requests = max_requests
        self.loop = loop
        self.trim_pending = False
        # Oldest first, for eviction and expiry; and per peer, newest last, for take().
        # A plain dict keeps insertion order and costs a quarter of an OrderedDict's
        # insert and delete, which happen on every proxied request.
        self.idle: dict[UpstreamConnection, None] = {}
        self.by_peer: dict[object, list[UpstreamConnection]] = {}
        # Per peer: connections being opened, and the exchanges waiting for one (CONNECT_LIMIT).
        self.connecting: dict[object, int] = {}
        self.waiting: dict[object, deque] = {}

    def take(self, peer) -> UpstreamConnection | None:
        """The most recently used idle connection to ``peer``, if any."""
        stack = self.by_peer.get(peer)
        while stack:
            conn = stack.pop()
            del self.idle[conn]
            if conn.closed or conn.transport.is_closing():
                continue
            conn.reused = True
            return conn
        return None

    def put(self, conn: UpstreamConnection, now: float):
        """Keep ``conn`` for reuse, evicting the least recently used beyond ``size``."""
        conn.exchange = None
        # A transport that is closing is not checked here: take() skips it, and its
        # connection_lost() takes it out of the pool.
        if self.size <= 0 or conn.closed or conn.requests >= self.max_requests:
            conn.close()
            return
        waiter = self.next_waiter(conn.peer) if self.waiting else None
        if waiter is not None:
            conn.reused = True
            waiter.take_connection(conn, now)
            return
        conn.idle_since = now
        self.idle[conn] = None
        stack = self.by_peer.get(conn.peer)
        if stack is None:
            stack = self.by_peer[conn.peer] = []
        stack.append(conn)
        if len(self.idle) > self.size:
            self.over_size()

    def over_size(self):
        """More idle connections than ``size``: trim now, or once this iteration ends."""
        if self.loop is None:
            self.trim()
        elif not self.trim_pending:
            self.trim_pending = True
            self.loop.call_soon(self.trim)

    def trim(self):
        """Close the least recently used idle connections beyond ``size`` idle for TRIM_DELAY."""
        self.trim_pending = False
        limit = self.loop.time() - TRIM_DELAY if self.loop is not None else float("inf")
        while len(self.idle) > self.size:
            conn = next(iter(self.idle))      # the least recently used
            if conn.idle_since > limit:       # the rest are younger: come back for this one
                self.trim_pending = True
                self.loop.call_at(conn.idle_since + TRIM_DELAY, self.trim)
                return
            conn.close()                      # close() forgets it

    def may_connect(self, peer) -> bool:
        """Whether a new connection to ``peer`` may start now (CONNECT_LIMIT)."""
        return self.connecting.get(peer, 0) < CONNECT_LIMIT

    def connect_started(self, peer):
        self.connecting[peer] = self.connecting.get(peer, 0) + 1

    def connect_done(self, peer, _future=None):
        """A connection to ``peer`` opened or failed: the first exchange waiting may start one."""
        left = self.connecting.get(peer, 1) - 1
        if left > 0:
            self.connecting[peer] = left
        else:
            self.connecting.pop(peer, None)
        waiter = self.next_waiter(peer) if self.waiting else None
        if waiter is not None:
            waiter.connect_waited(peer)

    def wait(self, peer, exchange):
        """``exchange`` waits for a connection to ``peer`` (its ``waiting`` set meanwhile)."""
        queue = self.waiting.get(peer)
        if queue is None:
            queue = self.waiting[peer] = deque()
        queue.append(exchange)

    def next_waiter(self, peer):
        """The first exchange still waiting for ``peer``, no longer waiting once returned."""
        queue = self.waiting.get(peer)
        while queue:
            exchange = queue.popleft()
            if exchange.waiting:        # not timed out or abandoned meanwhile
                exchange.waiting = False
                if not queue:
                    del self.waiting[peer]
                return exchange
        self.waiting.pop(peer, None)
        return None

    def forget(self, conn: UpstreamConnection):
        if self.idle.pop(conn, 0) is None:
            self.by_peer[conn.peer].remove(conn)

    def expire(self, now: float):
        """Close connections idle for longer than the keep-alive timeout."""
        limit = now - self.timeout
        while self.idle:
            conn = next(iter(self.idle))
            if conn.idle_since > limit:
                break
            conn.close()

    def close_all(self):
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
        self.by_peer.clear()


class UpstreamRuntime:
    """One upstream block inside a worker: its balancer and its idle connections."""

    __slots__ = ("config", "balancer", "pool")

    def __init__(self, config, balancer, loop=None):
        self.config = config
        self.balancer = balancer
        self.pool = KeepalivePool(config.keepalive, config.keepalive_timeout,
                                  config.keepalive_requests, loop)
