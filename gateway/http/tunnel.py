"""An upgraded connection (WebSocket, or any ``Upgrade``): bytes relayed both ways.

nginx's ngx_http_upstream_upgrade and ngx_http_upstream_process_upgraded, on asyncio transports.
It begins when the upstream answers 101 to a request that carried an Upgrade field (nginx's test is
the client's field, r->headers_in.upgrade; the upstream only saw one if the location passes it on
with ``proxy_set_header Upgrade $http_upgrade``). Then:

- the 101 head goes to the client with ``Connection: upgrade`` and the upstream's fields, Upgrade
  included, and both connections are handed to the tunnel (``transport.set_protocol``);
- bytes are relayed as they come, never parsed: a frame of any size passes through in pieces;
- back-pressure: while one side's transport holds more than its high-water mark unsent, the other
  side is not read, so each direction holds at most one transport buffer plus one read;
- timeouts, re-armed at every event on either side as nginx re-arms its timers in each
  process_upgraded call: proxy_read_timeout with no event at all (while the upstream is read),
  proxy_send_timeout while the upstream does not take our bytes, and nginx's default send_timeout
  (60s; the directive is accepted but not acted on) while the client does not take them;
- the end: as soon as either side closes (FIN or error), both are closed once the bytes already
  read are written. nginx keeps no half-closed tunnel: it finalizes when either side's read hits
  end of file with nothing left to send;
- the upstream connection is then closed, never put back in the keep-alive pool, and the request
  is logged with status 101 and the bytes relayed to the client; the bytes relayed each way
  count in the try's $upstream_bytes_received and $upstream_bytes_sent, as nginx counts them
  (u->state->bytes_received, and the upstream connection's c->sent), not in its
  $upstream_response_length.
"""

from __future__ import annotations

import asyncio

from gateway.http.plan import HIDDEN_RESPONSE
from gateway.http.responses import server_and_date, status_line_cached

# nginx's default send_timeout: how long a client may take none of the bytes we hold for it.
CLIENT_SEND_TIMEOUT = 60.0
# The fields hidden from an ordinary response, except Upgrade: a 101 needs it.
HIDDEN_101 = HIDDEN_RESPONSE - {b"upgrade"}


def start_tunnel(exchange, headers, rest: bytes):
    """Answer the client with the upstream's 101 and join the two connections."""
    tunnel = Tunnel(exchange)
    tunnel.start(headers, rest)
    return tunnel


class Tunnel:
    """The two connections of one upgraded request, relayed until either closes."""

    __slots__ = ("exchange", "conn", "request", "client", "upstream", "read_timeout",
                 "send_timeout", "active", "last_event", "done", "received", "sent")

    def __init__(self, exchange):
        self.exchange = exchange
        self.conn = exchange.conn
        self.request = exchange.request
        proxy = exchange.proxy
        self.read_timeout = proxy.read_timeout
        self.send_timeout = proxy.send_timeout
        self.active = False          # an event since the last sweep: the timers start again
        self.last_event = exchange.app.clock()
        self.done = False
        self.received = self.sent = 0    # bytes relayed from and to the upstream
        self.client = ClientSide(self)
        self.upstream = UpstreamSide(self)

    def start(self, headers, rest: bytes):
        conn, exchange = self.conn, self.exchange
        request = self.request
        head = self._head(headers)
        request.status = 101
        request.bytes_sent += len(head) + len(rest)
        request.body_bytes_sent += len(rest)
        conn.response_started = True
        conn.keep_alive = False
        conn.send_raw(head + rest if rest else head)
        client_transport = conn.transport
        upstream_transport = exchange.upstream.transport
        pending = conn.buffer            # bytes the client sent after its request head
        conn.buffer = b""
        conn.handler = self
        self.client.attach(client_transport, self.upstream)
        self.upstream.attach(upstream_transport, self.client)
        # Whatever the exchange paused is the tunnel's to decide now.
        conn.reading_paused = exchange.client_paused = exchange.upstream_paused = False
        self.client.blocked = _over_high_water(client_transport)
        self.upstream.blocked = _over_high_water(upstream_transport)
        _set_reading(upstream_transport, not self.client.blocked)
        _set_reading(client_transport, not self.upstream.blocked)
        if pending:
            self.client.data_received(pending)

    def _head(self, headers) -> bytes:
        request = self.request
        where = request.location if request.location is not None else request.server
        tokens = where.settings.server_tokens if where is not None else True
        parts = [status_line_cached(101), server_and_date.lines(tokens)]
        for lower, name, value in headers:
            if lower not in HIDDEN_101:
                parts.append(b"%s: %s\r\n" % (name, value))
        for name, template, always in self.exchange.plan.add_headers:
            if always:           # 101 is not among the codes add_header applies to by default
                value = template.render(request)
                if value:
                    parts.append(b"%s: %s\r\n" % (name, value.encode("latin-1", "replace")))
        parts.append(b"Connection: upgrade\r\n\r\n")
        return b"".join(parts)

    # Events from the sides ------------------------------------------------------

    def side_closed(self):
        """A side sent FIN or went away: close both once what was read is written."""
        self.finish(None)

    def finish(self, detail: str | None, abort: bool = False):
        if self.done:
            return
        self.done = True
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is not None:
                if abort:
                    transport.abort()
                else:
                    transport.close()
        self.exchange.tunnelled(self.received, self.sent)
        self.exchange.tunnel_closed(detail)

    # The handler interface of the client connection (its sweep and shutdown) -------

    def check_deadline(self, now: float):
        if self.done:
            return
        if self.active:
            self.active = False
            self.last_event = now
            return
        idle = now - self.last_event
        if self.client.blocked and idle >= CLIENT_SEND_TIMEOUT:
            self.finish("client timed out (110: Connection timed out) while proxying "
                        "upgraded connection", abort=True)
        elif (self.upstream.blocked and idle >= self.send_timeout) or \
                (not self.client.blocked and idle >= self.read_timeout > 0):
            self.finish("upstream timed out (110: Connection timed out) while proxying "
                        "upgraded connection", abort=True)

    def client_aborted(self):
        self.finish(None)

    def cancel(self):
        self.finish(None)


class _Side(asyncio.Protocol):
    """One end of the tunnel: the protocol of its transport once the 101 went out."""

    __slots__ = ("tunnel", "transport", "other", "blocked")

    def __init__(self, tunnel):
        self.tunnel = tunnel
        self.transport = None
        self.other = None
        self.blocked = False          # our transport holds more than its high-water mark

    def attach(self, transport, other):
        self.transport = transport
        self.other = other
        transport.set_protocol(self)

    def eof_received(self):
        self.tunnel.side_closed()
        return True                   # finish() closes the transport itself

    def connection_lost(self, exc):
        self.tunnel.side_closed()

    def pause_writing(self):
        self.blocked = True
        self.tunnel.active = True
        _set_reading(self.other.transport, False)

    def resume_writing(self):
        self.blocked = False
        self.tunnel.active = True
        _set_reading(self.other.transport, True)


class ClientSide(_Side):
    """The client's connection: its bytes go to the upstream."""

    __slots__ = ()

    def data_received(self, data):
        tunnel = self.tunnel
        tunnel.active = True
        tunnel.sent += len(data)
        self.other.transport.write(data)

    def connection_lost(self, exc):
        tunnel = self.tunnel
        tunnel.side_closed()
        tunnel.conn.connection_lost(exc)     # the app forgets the connection


class UpstreamSide(_Side):
    """The upstream's connection: its bytes go to the client and count as sent to it."""

    __slots__ = ()

    def data_received(self, data):
        tunnel = self.tunnel
        tunnel.active = True
        tunnel.received += len(data)
        request = tunnel.request
        request.bytes_sent += len(data)
        request.body_bytes_sent += len(data)
        self.other.transport.write(data)


def _over_high_water(transport) -> bool:
    return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]


def _set_reading(transport, on: bool):
    if transport.is_closing():
        return
    if on:
        transport.resume_reading()
    else:
        transport.pause_reading()
