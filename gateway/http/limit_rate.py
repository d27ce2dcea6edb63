"""limit_rate, limit_rate_after and X-Accel-Limit-Rate: nginx's write filter pacing.

A ``Pacer`` sits between a client connection (or an HTTP/2 stream: nginx paces each on
its own) and its socket for one response (the connection's ``pacer``; None, the usual case, costs one comparison per write). It sends as
ngx_http_write_filter does: at most ``rate * (now - start + 1) - (sent - after)`` bytes at
once (whole seconds, as ngx_time() and r->start_sec count), then waits the time the bytes
beyond ``limit_rate_after`` take at the rate. While it waits, or holds bytes it may not send
yet, the handler is told the client's buffer is full, so the upstream (or the file) is not
read: what waits is at most one read's worth. The response's end waits for what is held.
"""

from __future__ import annotations

import time
from collections import deque

from gateway.config.values import parse_size
from gateway.observe.errorlog import log

# request.vars: the rate once chosen for the response (r->limit_rate with limit_rate_set).
RATE = " limit_rate"


def _size(setting, request) -> int:
    """A limit_rate/limit_rate_after setting's bytes (ngx_http_complex_value_size)."""
    if not isinstance(setting, str):
        return setting
    from gateway.http.variables import compile_template   # per request only with variables
    text = compile_template(setting).render(request)
    size = parse_size(text)
    if size is None:
        log.error(f'*{request.connection_id} invalid size "{text}"{_client(request)}')
        return 0
    return size


def _client(request) -> str:
    return f', client: {request.remote_addr}, request: "{request.method} {request.request_uri}"'


def _vars(request) -> dict:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    return values


def set_variable(request, value: str) -> None:
    """``set $limit_rate VALUE`` (ngx_http_variable_set_limit_rate)."""
    size = parse_size(value)
    if size is None:
        log.error(f'*{request.connection_id} invalid $limit_rate "{value}"{_client(request)}')
        return
    _vars(request)[RATE] = size


def variable(request) -> str:
    """``$limit_rate``: the rate chosen for the response, else the one configured."""
    values = getattr(request, "vars", None)
    if values and RATE in values:
        return str(values[RATE])
    if not request.status:
        return "0"          # nginx evaluates limit_rate when the response starts
    where = request.location if request.location is not None else request.server
    if where is None or (where.settings.proxy_pass is not None
                         and not where.settings.proxy_buffering):
        return "0"          # unbuffered proxying is never paced
    return str(_size(where.settings.limit_rate, request))


def configured(settings) -> bool:
    """Whether a location may pace its responses by its own settings."""
    return bool(settings.limit_rate)


def accel_rate(headers, ignored) -> int | None:
    """The upstream's X-Accel-Limit-Rate as nginx reads it (ngx_atoi), or None.

    ``headers``: (lowercase name, name, value) bytes, as the response parser gives them.
    """
    if "x-accel-limit-rate" in ignored:
        return None
    for lower, _name, value in headers:
        if lower == b"x-accel-limit-rate":
            return int(value) if value.isdigit() else None
    return None


def unbuffered(settings, headers) -> bool:
    """nginx proxies unbuffered (so unpaced) with proxy_buffering off or X-Accel-Buffering: no."""
    if "x-accel-buffering" not in settings.proxy_ignore_headers:
        for lower, _name, value in headers:
            if lower == b"x-accel-buffering":
                return value.lower() == b"no"
    return not settings.proxy_buffering


def start(conn, request, settings, proxied_headers=None) -> None:
    """Choose the response's rate as nginx's write filter does and pace it if there is one.

    ``proxied_headers``: the upstream's fields, for a proxied response (X-Accel-Limit-Rate,
    unbuffered proxying); None for other answers.
    """
    values = _vars(request)
    if proxied_headers is not None:
        if unbuffered(settings, proxied_headers):
            values[RATE] = 0
            return
        accel = accel_rate(proxied_headers, settings.proxy_ignore_headers)
        if accel is not None:
            values[RATE] = accel
    rate = values.get(RATE)
    if rate is None:
        rate = values[RATE] = _size(settings.limit_rate, request)
    if rate <= 0:
        return
    conn.pacer = Pacer(conn, request, rate, _size(settings.limit_rate_after, request))


def start_accel(conn, request, buffer) -> None:
    """The compiled exchange saw X-Accel-Limit-Rate in the upstream's head ``buffer``."""
    from gateway.http.parser import parse_response_head
    where = request.location if request.location is not None else request.server
    start(conn, request, where.settings, parse_response_head(buffer, len(buffer))[3])


class Pacer:
    """Paces one response on one connection (see the module's docstring)."""

    __slots__ = ("conn", "rate", "after", "start_sec", "sent", "pending", "timer",
                 "waiting", "delayed", "finishing")

    def __init__(self, conn, request, rate: int, after: int):
        self.conn = conn
        self.rate = rate
        self.after = after
        # r->start_sec: the request's start on the wall clock, in whole seconds.
        self.start_sec = int(time.time() - max(conn.app.clock() - request.start_time, 0.0))
        self.sent = 0
        self.pending: deque = deque()
        self.timer = None
        self.waiting = False        # nginx's c->write->delayed: a wait is running
        self.delayed = False        # the handler is held (told the client's buffer is full)
        self.finishing = False

    def write(self, data) -> None:
        """Bytes for the client, after everything written before them."""
        if self.waiting:
            self.pending.append(data)
            return
        self._send(data)

    def _send(self, data) -> None:
        limit = self.rate * (int(time.time()) - self.start_sec + 1) - (self.sent - self.after)
        if limit <= 0:
            self.pending.appendleft(data)
            self._wait(-limit / self.rate + 0.001)
            return
        rest = None
        if len(data) > limit:
            data, rest = data[:limit], data[limit:]
        before, self.sent = self.sent, self.sent + len(data)
        self.conn.write_now(data)
        after = self.after
        paced = max(self.sent - after, 0) - max(before - after, 0)
        delay = (paced * 1000 // self.rate) / 1000      # whole milliseconds, as nginx's timer
        if rest is not None:
            self.pending.appendleft(rest)
            self._wait(max(delay, 0.001))
        elif delay > 0:
            self._wait(delay)

    def _wait(self, delay: float) -> None:
        self.waiting = True
        conn = self.conn
        self.timer = conn.app.loop.call_later(delay, self._wake)
        if self.delayed:
            return
        self.delayed = True
        handler = conn.handler
        if handler is not None and not conn.writing_paused:
            handler.client_write_paused()
        if getattr(handler, "deadline", None):
            # nginx reads the upstream meanwhile (into its buffers): no read timeout runs
            # while the pace holds it; client_write_resumed() arms it again.
            handler.deadline = 0.0

    def _wake(self) -> None:
        self.timer = None
        self.waiting = False
        conn = self.conn
        if conn.transport is None or conn.transport.is_closing():
            self.pending.clear()
        while self.pending and not self.waiting:
            self._send(self.pending.popleft())
        if self.finishing and not self.pending:
            conn.finish_response()      # nginx ends the request once its bytes went
            return
        if self.waiting:
            return
        self.delayed = False
        handler = conn.handler
        if handler is not None and not conn.writing_paused:
            handler.client_write_resumed()

    def holds_finish(self) -> bool:
        """At the response's end: True while bytes wait (the end comes once they are sent)."""
        if self.pending:
            self.finishing = True
            return True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.conn.pacer = None
        return False
