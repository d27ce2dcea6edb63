"""The Pacer against nginx's write filter arithmetic, on a fake clock (no sockets)."""

from __future__ import annotations

import pytest

from gateway.http import limit_rate
from gateway.http.limit_rate import Pacer


class Clock:
    def __init__(self, now=1000.25):
        self.now = now
        self.timers = []

    def call_later(self, delay, callback):
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def run_next(self):
        """Move to the next timer and fire it; its delay."""
        timer = min((t for t in self.timers if not t.cancelled), key=lambda t: t.when)
        self.timers.remove(timer)
        delay = timer.when - self.now
        self.now = timer.when
        timer.callback()
        return round(delay, 3)


class Timer:
    def __init__(self, when, callback):
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self):
        self.cancelled = True


class Handler:
    def __init__(self):
        self.events = []

    def client_write_paused(self):
        self.events.append("paused")

    def client_write_resumed(self):
        self.events.append("resumed")


class Transport:
    def is_closing(self):
        return False


class App:
    def __init__(self, clock):
        self.loop = clock
        self.clock = lambda: clock.now


class Conn:
    def __init__(self, clock):
        self.app = App(clock)
        self.handler = Handler()
        self.writing_paused = False
        self.transport = Transport()
        self.sent = []
        self.finished = 0
        self.pacer = None

    def write_now(self, data):
        self.sent.append(len(data))

    def finish_response(self):
        if self.pacer is not None and self.pacer.holds_finish():
            return
        self.finished += 1


class Request:
    start_time = 1000.25
    vars = None
    remote_addr = "127.0.0.1"
    connection_id = 1
    method = "GET"
    request_uri = "/"
    status = 0


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(limit_rate.time, "time", lambda: clock.now)
    return clock


def test_nginx_arithmetic(clock):
    """rate 100, after 50: 150 at once (a second's worth plus the free part), then 100 a
    second; each wait is the time the bytes beyond limit_rate_after take."""
    conn = Conn(clock)
    pacer = conn.pacer = Pacer(conn, Request(), 100, 50)
    pacer.write(b"x" * 400)
    assert conn.sent == [150] and conn.handler.events == ["paused"]
    assert clock.run_next() == 1.0            # (150 - 50) bytes at 100/s
    assert conn.sent == [150, 100]
    assert clock.run_next() == 1.0
    assert conn.sent == [150, 100, 100]
    assert clock.run_next() == 1.0
    assert conn.sent == [150, 100, 100, 50]
    # The last piece was sent at once: its wait still runs before more may go.
    assert pacer.waiting and conn.handler.events == ["paused"]
    pacer.write(b"y" * 10)
    assert conn.sent[-1] == 50
    assert clock.run_next() == 0.5
    # limit = 100 * (now - start + 1) - (sent - after) = 100 * 4 - 350 = 50: 10 go.
    assert conn.sent[-1] == 10 and conn.handler.events == ["paused"]
    assert clock.run_next() == 0.1
    assert conn.handler.events == ["paused", "resumed"] and not pacer.delayed


def test_over_the_limit_waits_first(clock):
    """A write when the budget is spent waits -limit / rate + 1 ms before anything goes."""
    conn = Conn(clock)
    pacer = conn.pacer = Pacer(conn, Request(), 100, 0)
    pacer.sent = 250      # more than two seconds' worth already
    pacer.write(b"z" * 10)
    assert conn.sent == []
    assert clock.run_next() == 1.501           # 150 over at 100/s, plus nginx's 1 ms
    # Still 50 over in whole seconds (nginx's ngx_time()): another wait.
    assert conn.sent == []
    assert clock.run_next() == 0.501
    assert conn.sent == [10]


def test_finish_waits_for_held_bytes(clock):
    conn = Conn(clock)
    pacer = conn.pacer = Pacer(conn, Request(), 1000, 0)
    pacer.write(b"a" * 2500)
    conn.finish_response()
    assert conn.finished == 0 and sum(conn.sent) == 1000
    clock.run_next()
    clock.run_next()
    assert conn.finished == 1 and sum(conn.sent) == 2500
    assert conn.pacer is None


def test_finish_with_nothing_held_is_at_once(clock):
    conn = Conn(clock)
    conn.pacer = Pacer(conn, Request(), 1000, 0)
    conn.pacer.write(b"a" * 500)
    conn.finish_response()
    assert conn.finished == 1 and conn.pacer is None
    assert all(t.cancelled for t in clock.timers)


@pytest.mark.parametrize("text,size", [("100k", 102400), ("1m", 1048576), ("512", 512),
                                       ("fast", None), ("", None)])
def test_set_limit_rate(text, size):
    request = Request()
    request.vars = {}
    limit_rate.set_variable(request, text)
    assert request.vars.get(limit_rate.RATE) == size


@pytest.mark.parametrize("value,rate", [(b"1000", 1000), (b"0", 0), (b"x", None), (b"-5", None)])
def test_accel_rate(value, rate):
    headers = [(b"x-accel-limit-rate", b"X-Accel-Limit-Rate", value)]
    assert limit_rate.accel_rate(headers, frozenset()) == rate
    assert limit_rate.accel_rate(headers, frozenset({"x-accel-limit-rate"})) is None
