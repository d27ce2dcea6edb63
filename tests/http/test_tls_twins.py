"""The TLS connections of both twins, without sockets to real servers: fake transports.

The compiled twin never sends directly on a TLS connection (client or upstream side), and
both twins answer alike over TLS ($https, $ssl_*, https redirects, X-Forwarded-Proto).
"""

from __future__ import annotations

import asyncio
import re
import socket

import pytest


def test_direct_sends_never_on_a_tls_connection():
    """The compiled twin: writes on TlsClientConnection always go through the transport."""
    proxyproto = pytest.importorskip("_fastpath.proxyproto")
    from gateway.config.model import Tls

    class Transport:
        """Holds what write() gives it; offers its socket to direct sends."""

        def __init__(self, sock, tls):
            self.sock, self.tls, self.held = sock, tls, []

        def get_extra_info(self, name, default=None):
            if name == "socket":
                return self.sock
            if name == "ssl_object":
                return object() if self.tls else None
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

        def write(self, data):
            self.held.append(bytes(data))

        def get_write_buffer_size(self):
            return 0

        def close(self):
            pass

    class Server:
        large_client_header_buffers = (4, 8192)
        client_header_timeout = 60.0
        plan = router = None
        server_names = [""]
        tls = Tls()         # no client certificates asked for

    class App:
        connections = set()
        handshakes = {}
        max_connections = 10
        shutting_down = False

        def clock(self):
            return 0.0

        def next_connection_id(self):
            return 1

        def default_server(self, key):
            return Server

    proxyproto._allow_direct_sends(Transport)
    sent = {}
    for cls, tls in ((proxyproto.ClientConnection, False),
                     (proxyproto.TlsClientConnection, True),
                     (proxyproto.UpstreamConnection, False),
                     (proxyproto.TlsUpstreamConnection, True)):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        transport = Transport(ours, tls)
        if "Upstream" in cls.__name__:
            conn = cls(None, None)
        else:
            conn = cls(App(), ("127.0.0.1", 1))
        conn.connection_made(transport)
        for piece in (b"one ", b"two ", b"three"):
            conn.send(piece)
        theirs.setblocking(False)
        try:
            sent[cls.__name__] = theirs.recv(100)
        except BlockingIOError:
            sent[cls.__name__] = b""
        assert b"".join(transport.held) + sent[cls.__name__] == b"one two three"
        ours.close()
        theirs.close()
    # The plain ones did send directly (so the setup can see it); the TLS ones never.
    assert sent["ClientConnection"] and sent["UpstreamConnection"]
    assert sent["TlsClientConnection"] == sent["TlsUpstreamConnection"] == b""


# Both twins over a TLS connection: the same bytes (fake transports, as test_protocol_parity) --

TWIN_CONFIG = """
events { worker_connections 64; }
http {
    upstream single { server 127.0.0.1:9003; }
    server {
        listen 127.0.0.1:8080;
        server_name parity.test;
        location / {
            proxy_pass http://single;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Tls "$https $ssl_protocol $ssl_cipher";
        }
        location /ret { return 200 "$https|$ssl_protocol|$ssl_server_name|$ssl_session_reused"; }
        location /moved { return 301 /elsewhere; }
    }
}
"""


class FakeSslObject:
    """What the $ssl_* variables read from ssl.SSLObject."""

    session_reused = True
    gateway_server_name = "parity.test"

    def version(self):
        return "TLSv1.3"

    def cipher(self):
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)


async def _twin_transcript(conn_class, tmp_path):
    from gateway.config import load_config
    from gateway.http.server import WorkerApp
    from tests.http.test_protocol_parity import FakeLoop, FakeTransport

    class TlsTransport(FakeTransport):
        def get_extra_info(self, name, default=None):
            if name == "ssl_object":
                return FakeSslObject()
            return super().get_extra_info(name, default)

    events = []
    loop = FakeLoop(events)
    path = tmp_path / "gateway.conf"
    path.write_text(TWIN_CONFIG)
    app = WorkerApp(load_config(str(path), str(tmp_path)), loop)
    client = conn_class(app, next(iter(app.listen_keys)))
    client.connection_made(TlsTransport(events, "client", client))
    for target in (b"/ret", b"/moved", b"/p"):
        client.data_received(b"GET %s HTTP/1.1\r\nHost: parity.test\r\n\r\n" % target)
        for _ in range(5):
            await asyncio.sleep(0)
    loop.upstreams[0][0].data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    for _ in range(5):
        await asyncio.sleep(0)
    return [tuple(re.sub(rb"Date: [^\r]*\r\n", b"", p) if isinstance(p, bytes) else p
                  for p in event) for event in events]


async def test_both_twins_answer_alike_over_tls(tmp_path):
    proxyproto = pytest.importorskip("_fastpath.proxyproto")
    from gateway.http import connection as py_connection
    ours = await _twin_transcript(py_connection.TlsClientConnection, tmp_path)
    compiled = await _twin_transcript(proxyproto.TlsClientConnection, tmp_path)
    assert ours == compiled
    writes = b"".join(e[2] for e in ours if e[1] == "write")
    assert writes.count(b"on|TLSv1.3|parity.test|r") == 1
    assert b"Location: https://parity.test:8080/elsewhere\r\n" in writes
    assert b"X-Forwarded-Proto: https\r\n" in writes
    assert b"X-Tls: on TLSv1.3 TLS_AES_128_GCM_SHA256\r\n" in writes
