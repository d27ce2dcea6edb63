"""The compiled proxy path (_fastpath.proxyproto) against its Python twins, byte for byte.

Each case feeds the same client and upstream bytes to a WorkerApp built from a real
config, once with gateway.http.connection.ClientConnection and once with the compiled
one, over fake transports and a fake clock, and compares everything either side wrote,
every close and pause, and the access log lines.
"""

import asyncio
import importlib
import re

import pytest

from gateway.config import load_config
from gateway.http import connection as py_connection
from gateway.http.server import WorkerApp

CONFIG = r"""
events { worker_connections 64; }
http {
    log_format parity '$status $body_bytes_sent $request_length $upstream_addr '
                      '[$upstream_status] [$upstream_response_time] [$upstream_header_time] '
                      '$connection_requests "$request" $host $pipe '
                      '[$upstream_response_length] [$upstream_bytes_received] '
                      '[$upstream_bytes_sent]';
    access_log ACCESS parity;
    upstream b {
        server 127.0.0.1:9001;
        server 127.0.0.1:9002;
        keepalive 4;
    }
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    # The rewrite scenario of bench/configs.py and more: scripts the compiled connection
    # runs itself (_answer_script) or hands back to the app.
    map $uri $route_tag { default app; ~^/static/ static; /rw/exact exact; ~^/rw/(s)mall "$1-map"; }
    upstream single {
        server 127.0.0.1:9003;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:8080;
        server_name parity.test;
        client_header_timeout 5s;
        client_body_timeout 5s;
        keepalive_timeout 30s;
        keepalive_requests 3;
        location / {
            proxy_pass http://single;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_read_timeout 10s;
            client_max_body_size 1k;
        }
        location /retry/ {
            proxy_pass http://b/r/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
            add_header X-Where retry;
        }
        location /old {
            proxy_pass http://single;
        }
        location /big {
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
            client_max_body_size 0;
        }
        location /ws {
            proxy_pass http://single;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 10s;
            proxy_send_timeout 3s;
            add_header X-Always yes always;
            add_header X-Not-On-101 no;
        }
        location /ret {
            return 200 "hello $uri";
        }
        location /hdr/ {
            proxy_pass http://single/h/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            expires 1h;
            proxy_hide_header X-Secret;
            proxy_pass_header Server;
            proxy_redirect default;
            proxy_redirect ~^http://up\.([a-z]+)/(.*)$ /$1/$2;
            proxy_cookie_domain inner.test parity.test;
            proxy_cookie_path /h/ /hdr/;
            add_header X-Added yes;
        }
        location /rw/ {
            if ($request_method = POST) { return 405; }
            if ($arg_deny) { return 403 "denied $arg_deny"; }
            rewrite ^/rw/legacy/(.*)$ /rw/$1 permanent;
            rewrite ^/rw/last/(.*)$ /$1 last;
            rewrite ^/rw/args/(.*)$ /rw/x?a=$1 break;
            rewrite ^/rw/(small|big|exact)$ /rw/$1 break;
            rewrite ^/rw/plain/(.*)$ /rw/p/$1;
            proxy_pass http://single;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Route $route_tag;
            proxy_set_header X-Cap "$1-$uri";
        }
        location /rwpart/ {
            rewrite ^/rwpart/(.*)$ /rwpart/x/$1 break;
            proxy_pass http://single/base/;
        }
        location /intercepted/ {
            proxy_pass http://single;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_intercept_errors on;
            error_page 404 /ret;
        }
    }
}
"""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: up\r\n\r\nok"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad"
GET = b"GET /a?x=1 HTTP/1.1\r\nHost: parity.test\r\nUser-Agent: t\r\n\r\n"


class FakeTransport:
    """Records what a protocol writes; closing reports connection_lost as uvloop does."""

    def __init__(self, events, name, protocol):
        self.events = events
        self.name = name
        self.protocol = protocol
        self.closing = False
        self.buffered = 0        # what get_write_buffer_size() says

    def set_protocol(self, protocol):
        self.events.append((self.name, "set_protocol", type(protocol).__name__))
        self.protocol = protocol

    def get_write_buffer_size(self):
        return self.buffered

    def get_write_buffer_limits(self):
        return (16384, 65536)

    def write(self, data):
        self.events.append((self.name, "write", bytes(data)))

    def close(self):
        if not self.closing:
            self.closing = True
            self.events.append((self.name, "close"))
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self):
        self.close()

    def is_closing(self):
        return self.closing

    def pause_reading(self):
        self.events.append((self.name, "pause_reading"))

    def resume_reading(self):
        self.events.append((self.name, "resume_reading"))

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.9", 5555), "sockname": ("127.0.0.1", 8080)}.get(name, default)


class FakeLoop:
    """What WorkerApp and the proxy use a loop for: the clock, connecting, a callback soon."""

    def __init__(self, events):
        self.now = 1000.0
        self.events = events
        self.upstreams = []
        self.refuse = set()
        self.held = {}           # port -> Event: connecting there waits until it is set

    def time(self):
        return self.now

    def call_soon(self, callback, *args):
        return asyncio.get_running_loop().call_soon(callback, *args)

    async def create_connection(self, factory, host, port):
        if port in self.held:
            await self.held[port].wait()
        if port in self.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        protocol = factory()
        name = f"upstream{len(self.upstreams)}:{port}"
        self.events.append((name, "connect"))
        transport = FakeTransport(self.events, name, protocol)
        self.upstreams.append((protocol, transport))
        protocol.connection_made(transport)
        return transport, protocol


class Harness:
    """One client connection of one implementation, driven step by step."""

    def __init__(self, conn_class, tmp_path):
        self.events = []
        self.loop = FakeLoop(self.events)
        self.access = tmp_path / "access.log"
        path = tmp_path / "gateway.conf"
        path.write_text(CONFIG.replace("ACCESS", str(self.access)))
        self.app = WorkerApp(load_config(str(path), str(tmp_path)), self.loop)
        key = next(iter(self.app.listen_keys))
        self.client = conn_class(self.app, key)
        self.transport = FakeTransport(self.events, "client", self.client)
        self.client.connection_made(self.transport)

    async def settle(self):
        for _ in range(5):
            await asyncio.sleep(0)

    def deliver(self, protocol, data):
        self.loop.now += 0.125     # every step takes time: $upstream_*_time are not all 0
        try:
            protocol.data_received(data)
        except Exception as exc:     # what the event loop would log, then go on
            self.events.append(("exception", type(exc).__name__, str(exc)))

    # Bytes and events go to each transport's protocol of the moment (a tunnel takes it over).

    async def send(self, data):
        self.deliver(self.transport.protocol, data)
        await self.settle()

    async def answer(self, index, data):
        self.deliver(self.loop.upstreams[index][1].protocol, data)
        await self.settle()

    async def upstream_eof(self, index):
        transport = self.loop.upstreams[index][1]
        if not transport.protocol.eof_received():
            transport.close()
        await self.settle()

    async def client_eof(self):
        if not self.transport.protocol.eof_received():
            self.transport.close()
        await self.settle()

    async def client_gone(self):
        self.transport.closing = True
        self.transport.protocol.connection_lost(None)
        await self.settle()

    async def tick(self, seconds):
        self.loop.now += seconds
        for conn in list(self.app.connections):
            conn.check_deadline(self.loop.now)
        for upstream in self.app.upstreams.values():
            upstream.pool.expire(self.loop.now)
        await self.settle()

    def transcript(self):
        self.app.access_logs.flush()
        log = self.access.read_text() if self.access.exists() else ""
        events = [tuple(_normalise(part) for part in event) for event in self.events]
        return events, log


def _normalise(part):
    if isinstance(part, bytes):
        part = re.sub(rb"Expires: [^\r]*\r\n", b"Expires: -\r\n", part)
        return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", part)
    return part


async def scenario_get_keepalive(h):
    await h.send(GET)
    await h.answer(0, OK)
    await h.send(GET.replace(b"/a?x=1", b"/b"))
    await h.answer(0, OK)


async def scenario_pipelined(h):
    await h.send(GET + GET.replace(b"/a", b"/c"))
    await h.answer(0, OK)
    await h.answer(0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


async def scenario_split_heads(h):
    await h.send(GET[:10])
    await h.send(GET[10:])
    await h.answer(0, OK[:20])
    await h.answer(0, OK[20:-1])
    await h.answer(0, OK[-1:])


async def scenario_head_a_byte_at_a_time(h):
    # The second request follows the first's answer in the same pieces as its own head.
    head = GET.replace(b"User-Agent: t\r\n", b"User-Agent: t\r\nX-A: 1\r\nX-B: two\r\n")
    for i in range(len(head)):
        await h.send(head[i:i + 1])
    await h.answer(0, OK)
    for i in range(0, len(head), 7):
        await h.send(head[i:i + 7])
    await h.answer(0, OK)


async def scenario_bad_line_in_pieces(h):
    # Answered 400 once the bad line is all there, before the head ends.
    for piece in (b"GET / HTTP/1.1\r\nHost: parity.test\r\nBad ", b"Line\r", b"\nX-More: 1\r\n"):
        await h.send(piece)


async def scenario_long_line_in_pieces(h):
    # A header line over large_client_header_buffers (8k), sent in 100-byte pieces.
    await h.send(b"GET / HTTP/1.1\r\nHost: parity.test\r\nX-Long: ")
    for _ in range(90):
        await h.send(b"v" * 100)


async def scenario_long_request_line_in_pieces(h):
    await h.send(b"\r\nGET /")
    for _ in range(90):
        await h.send(b"a" * 100)


async def scenario_post_expect(h):
    await h.send(b"POST /p HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 10\r\n"
                 b"Expect: 100-continue\r\n\r\n01234")
    await h.send(b"56789")
    await h.answer(0, OK)


async def scenario_chunked_request(h):
    await h.send(b"PUT /p HTTP/1.1\r\nHost: parity.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n")
    await h.send(b"2\r\nde\r\n0\r\n\r\n")
    await h.answer(0, OK)


async def scenario_body_too_large(h):
    await h.send(b"POST /p HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 5000\r\n\r\nxx")


async def scenario_chunked_response(h):
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwi")
    await h.answer(0, b"ki\r\n0\r\n\r\n")
    await h.send(GET)
    await h.answer(0, OK)


async def scenario_close_delimited(h):
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome")
    await h.answer(0, b" more")
    await h.upstream_eof(0)
    await h.send(GET)
    await h.answer(1, OK)


async def scenario_http10_client(h):
    await h.send(b"GET /x HTTP/1.0\r\n\r\n")
    await h.answer(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")


async def scenario_retry_502(h):
    await h.send(b"GET /retry/x HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(0, BAD_GATEWAY)
    await h.answer(1, OK)


async def scenario_connect_refused(h):
    h.loop.refuse.update({9001, 9002})
    await h.send(b"GET /retry/x HTTP/1.1\r\nHost: parity.test\r\n\r\n")


async def scenario_stale_keepalive(h):
    await h.send(GET)
    await h.answer(0, OK)
    await h.send(GET)
    await h.upstream_eof(0)      # the idle connection was closed by the peer
    await h.answer(1, OK)


async def scenario_read_timeout(h):
    await h.send(GET)
    await h.tick(11)


async def scenario_header_timeout(h):
    await h.send(b"GET / HTTP/1.1\r\nHost: par")
    await h.tick(6)


async def scenario_keepalive_timeout(h):
    await h.send(GET)
    await h.answer(0, OK)
    await h.tick(31)


async def scenario_keepalive_requests(h):
    for _ in range(3):
        await h.send(GET)
        await h.answer(0, OK)


async def scenario_bad_requests(h):
    await h.send(b"GET / HTTP/1.1\r\n\r\n")


async def scenario_bad_host(h):
    await h.send(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")


async def scenario_client_abort(h):
    await h.send(GET)
    await h.client_gone()


async def scenario_upstream_lost_midway(h):
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await h.upstream_eof(0)


async def scenario_invalid_upstream_head(h):
    # The parser raises InvalidUpstreamResponse: both twins answer 502 at once.
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 2x0 Oops\r\n\r\n")
    await h.tick(11)


async def scenario_return_and_redirect(h):
    await h.send(b"GET /ret HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.send(b"GET /retry HTTP/1.1\r\nHost: parity.test\r\n\r\n")


async def scenario_discard_body(h):
    await h.send(b"POST /ret HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 6\r\n\r\nab")
    await h.send(b"cdef" + GET)
    await h.answer(0, OK)


async def scenario_http10_upstream(h):
    await h.send(b"GET /old HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(0, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await h.send(GET)
    await h.answer(1, OK)


async def scenario_absolute_target(h):
    await h.send(b"GET http://Other.Test:8080/z HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(0, OK)


async def scenario_interim_response(h):
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 100 Continue\r\n\r\n" + OK)


async def scenario_flow_control(h):
    await h.send(GET)
    h.client.pause_writing()
    await h.answer(0, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    h.client.resume_writing()
    await h.answer(0, b"cd")


async def scenario_shutdown(h):
    await h.send(GET)
    h.app.shutdown(graceful=True)
    await h.answer(0, OK)


async def scenario_early_answer(h):
    await h.send(b"POST /p HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 6\r\n\r\nabc")
    await h.answer(0, OK)
    await h.send(b"def" + GET)
    await h.answer(1, OK)


async def scenario_post_not_retried(h):
    await h.send(b"POST /big HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 2\r\n\r\nhi")
    await h.answer(0, BAD_GATEWAY)


async def scenario_head_and_204(h):
    await h.send(b"HEAD /a HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(0, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 204 No Content\r\n\r\n")


async def scenario_big_upload_pauses(h):
    # The connection is slow to open: the body waits, reading pauses, then both go on.
    h.loop.held[9001] = asyncio.Event()
    await h.send(b"PUT /big HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 2000000\r\n\r\n")
    for _ in range(3):
        await h.send(b"x" * 100000)
    h.loop.held[9001].set()
    await h.settle()
    for _ in range(17):
        await h.send(b"x" * 100000)
    await h.answer(0, OK)


async def scenario_upstream_write_paused(h):
    await h.send(b"PUT /big HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 8\r\n\r\nabcd")
    h.loop.upstreams[0][0].pause_writing()
    await h.send(b"efgh")
    h.loop.upstreams[0][0].resume_writing()
    await h.answer(0, OK)


UPGRADE = (b"GET /ws/chat HTTP/1.1\r\nHost: parity.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
SWITCHED = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: up\r\n\r\n")


async def scenario_tunnel_upstream_closes(h):
    # Bytes the client sent before the 101, and bytes after the 101 in the same read.
    await h.send(UPGRADE + b"early")
    await h.answer(0, SWITCHED + b"hello")
    await h.send(b"\x81\x02hi")
    await h.answer(0, b"\x81\x02hi")
    await h.upstream_eof(0)


async def scenario_tunnel_client_closes(h):
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    await h.send(b"\x88\x00")
    await h.client_eof()


async def scenario_tunnel_client_lost(h):
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    await h.client_gone()


async def scenario_tunnel_idle_timeout(h):
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    await h.tick(6)
    await h.send(b"ping")        # an event: the idle timer starts again
    await h.tick(6)
    await h.tick(6)
    await h.tick(6)


async def scenario_tunnel_back_pressure(h):
    await h.send(UPGRADE)
    await h.answer(0, SWITCHED)
    h.transport.protocol.pause_writing()         # the client takes no more: stop reading upstream
    await h.answer(0, b"more")
    h.transport.protocol.resume_writing()
    upstream = h.loop.upstreams[0][1]
    upstream.protocol.pause_writing()            # the upstream takes no more: stop reading client
    await h.tick(1)
    await h.tick(4)                              # proxy_send_timeout 3s


async def scenario_tunnel_blocked_at_switch(h):
    await h.send(UPGRADE)
    h.loop.upstreams[0][1].buffered = 100000     # over the high-water mark when the 101 comes
    await h.answer(0, SWITCHED)
    h.loop.upstreams[0][1].buffered = 0
    h.loop.upstreams[0][1].protocol.resume_writing()


async def scenario_upgrade_refused(h):
    # An upstream that does not switch: an ordinary response, and no tunnel.
    await h.send(UPGRADE)
    await h.answer(0, b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
    await h.send(GET)
    await h.answer(0, OK)


async def scenario_switch_not_asked_for(h):
    # 101 to a request without Upgrade: relayed, but neither connection is kept (nginx).
    await h.send(GET)
    await h.answer(0, SWITCHED)
    await h.send(GET)            # not read: the client connection closes


async def scenario_redirect_default(h):
    # nginx's implicit "proxy_redirect default": http://single/ becomes / (then absolute).
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 302 Found\r\nLocation: http://single/next\r\n"
                      b"Content-Length: 0\r\n\r\n")
    await h.send(GET)
    await h.answer(0, b"HTTP/1.1 302 Found\r\nLocation: http://other/next\r\n"
                      b"Content-Length: 0\r\n\r\n")


async def scenario_header_edits(h):
    request = b"GET /hdr/a HTTP/1.1\r\nHost: parity.test\r\n\r\n"
    await h.send(request)
    await h.answer(0, b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Secret: s\r\nX-Pad: p\r\n"
                      b"Cache-Control: private\r\nCache-Control: no-transform\r\n"
                      b"Set-Cookie: a=1; Domain=inner.test; Path=/h/x\r\n"
                      b"Location: http://single/h/in\r\nContent-Length: 2\r\n\r\nok")
    await h.send(request)
    await h.answer(0, b"HTTP/1.1 301 Moved\r\nRefresh: 3; url=http://up.zone/r\r\n"
                      b"Location: http://up.zone/p\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nhi\r\n0\r\n\r\n")
    await h.send(request)
    await h.answer(0, b"HTTP/1.1 404 Not Found\r\nSet-Cookie: b=2; domain=.INNER.test\r\n"
                      b"Content-Length: 0\r\n\r\n")


async def scenario_intercepted_error(h):
    await h.send(b"GET /intercepted/x HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone")
    await h.send(b"GET /intercepted/y HTTP/1.1\r\nHost: parity.test\r\n\r\n")
    await h.answer(1, b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops")


def rewrite_scenario(request):
    """One request to a script location (see location /rw/ above), then a plain GET."""
    async def scenario(h):
        await h.send(request)
        if h.loop.upstreams:
            await h.answer(0, OK)
        await h.send(GET)
        await h.answer(0, OK)
    return scenario


def host_scenario(host):
    async def scenario(h):
        await h.send(b"GET /ret HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    return scenario


# $host as nginx keeps it: the compiled twin has a fast path for plain lowercase names.
HOSTS = [b"parity.test", b"Parity.Test", b"parity.test.", b"parity.test:8080", b"a..b.:1",
         b"x_y-z", b"127.0.0.1:80", b"[::1]:8080", b"[::1", b"UPPER:1", b"a/b", b"a\\b",
         b"parity.test:", b":80", b".", b"p\xe9.test", b"h\tx", b"a,b"]

SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}
SCENARIOS.update({f"host_{i}": host_scenario(host) for i, host in enumerate(HOSTS)})
# Each target ends its script differently.
REWRITTEN = [b"/rw/small", b"/rw/small?q=1", b"/rw/exact", b"/rw/big?x=%20", b"/rw/args/b%20c?k=v",
             b"/rw/a%2Fb/small", b"/rw/legacy/x?y=1", b"/rw/small?deny=1", b"/rw/last/ret",
             b"/rw/plain/q", b"/rw/nothing", b"/rwpart/a?z=1", b"/rwpart/a+b", b"/rw/%73mall"]
SCENARIOS.update({f"rewrite_{i}": rewrite_scenario(b"GET " + target + b" HTTP/1.1\r\n"
                                                   b"Host: parity.test\r\n\r\n")
                  for i, target in enumerate(REWRITTEN)})
SCENARIOS["rewrite_post"] = rewrite_scenario(
    b"POST /rw/small HTTP/1.1\r\nHost: parity.test\r\nContent-Length: 0\r\n\r\n")


def compiled_class():
    try:
        return importlib.import_module("_fastpath.proxyproto").ClientConnection
    except ImportError as exc:
        pytest.fail(f"_fastpath.proxyproto is not built ({exc}): run `make extensions`")


async def run(conn_class, scenario, tmp_path):
    harness = Harness(conn_class, tmp_path)
    await scenario(harness)
    return harness.transcript()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_compiled_protocol_writes_what_the_twin_writes(name, tmp_path):
    scenario = SCENARIOS[name]
    (tmp_path / "py").mkdir()
    (tmp_path / "cy").mkdir()
    compiled = compiled_class()
    assert compiled.__module__ == "_fastpath.proxyproto"
    expected = await run(py_connection.ClientConnection, scenario, tmp_path / "py")
    got = await run(compiled, scenario, tmp_path / "cy")
    assert got == expected
    assert any(event[:2] == ("client", "write") for event in expected[0]) or \
        name in ("client_abort", "keepalive_timeout")


async def test_transcripts_show_the_proxied_bytes(tmp_path):
    """The harness itself: a keep-alive GET reaches the upstream and comes back once."""
    events, log = await run(compiled_class(), scenario_get_keepalive, tmp_path)
    upstream_writes = [e[2] for e in events if e[0].startswith("upstream") and e[1] == "write"]
    assert upstream_writes[0].startswith(b"GET /a?x=1 HTTP/1.1\r\nX-Real-IP: 127.0.0.9\r\n")
    assert [e for e in events if e[1] == "connect"] == [("upstream0:9003", "connect")]
    client_writes = [e[2] for e in events if e[0] == "client" and e[1] == "write"]
    assert len(client_writes) == 2 and all(w.endswith(b"\r\n\r\nok") for w in client_writes)
    assert log.count("200 2 ") == 2


async def test_an_app_with_its_own_dispatch_is_asked(tmp_path):
    """The compiled connection answers proxy plans itself only for WorkerApp's own dispatch."""
    seen = []

    class RecordingApp(WorkerApp):
        def dispatch(self, conn, request):
            seen.append(request.uri)
            super().dispatch(conn, request)

    harness = Harness(compiled_class(), tmp_path)
    harness.app.__class__ = RecordingApp
    harness.client = compiled_class()(harness.app, next(iter(harness.app.listen_keys)))
    harness.transport = FakeTransport(harness.events, "client", harness.client)
    harness.client.connection_made(harness.transport)
    await harness.send(GET)
    await harness.answer(0, OK)
    assert seen == ["/a"]
    assert harness.events[-1][:2] == ("client", "write")
    assert harness.events[-1][2].endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("compiled", [False, True], ids=["twin", "compiled"])
@pytest.mark.parametrize("name", ["get_keepalive", "pipelined", "keepalive_requests",
                                  "client_abort", "retry_502"])
async def test_no_request_stays_in_a_reference_cycle(name, compiled, tmp_path):
    """request.connection ($connection_time, $tcpinfo_*) is dropped once the request is
    logged or its connection lost: it keeps no finished request in a cycle. (A closed
    connection may be in one of its own with the fake transport: not what is checked.)"""
    import gc
    from gateway.http.request import Request
    classes = (Request, importlib.import_module("_fastpath.request").Request) \
        if compiled else (Request,)
    conn_class = compiled_class() if compiled else py_connection.ClientConnection
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await run(conn_class, SCENARIOS[name], tmp_path)
        gc.collect()
        cycled = [o for o in gc.garbage if isinstance(o, classes)]
        linked = [o for o in cycled if getattr(o, "connection", None) is not None]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert linked == []
