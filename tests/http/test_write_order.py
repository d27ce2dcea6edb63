"""Bytes reach each side in order when sends go straight to the socket.

The compiled connection sends to the socket itself while the transport holds nothing,
and hands any remainder to the transport. These tests make remainders happen (large
responses to a client that reads late, large uploads) and check that every response
and every request arrives whole and in order afterwards, on the same connections.
"""

import hashlib
import json
import socket
import time

from tests.http.test_proxy import config
from tests.support.processes import free_port


class Reader:
    """Responses with a Content-Length body, one after another, from one socket."""

    def __init__(self, sock, step=1 << 20, pause=0.0):
        self.sock = sock
        self.data = b""
        self.step = step
        self.pause = pause      # a slow reader: the socket fills and drains many times

    def _fill(self):
        if self.pause:
            time.sleep(self.pause)
        chunk = self.sock.recv(self.step)
        assert chunk, "the gateway closed the connection"
        self.data += chunk

    def response(self) -> tuple[bytes, bytes]:
        while b"\r\n\r\n" not in self.data:
            self._fill()
        head, _, rest = self.data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            self._fill()
            head, _, rest = self.data.partition(b"\r\n\r\n")
        self.data = rest[length:]
        return head, rest[:length]


def _pipeline(sizes):
    """Requests alternating /big (x-filled bodies) and /echo, each echo naming its place."""
    out = []
    for i, size in enumerate(sizes):
        out.append(f"GET /api/big?n={size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        out.append(f"GET /api/echo{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return b"".join(out)


def test_responses_stay_in_order_when_the_client_reads_late(start_gateway, backend):
    port = free_port()
    gw = start_gateway(config(port, backend), port)
    sizes = [3_000_000, 10, 1_500_000, 70_000, 2_000_000, 5]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        # A small receive buffer: what the socket cannot take waits in the transport.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        reader = Reader(sock, step=8192, pause=0.0002)
        # Warm the connection up (the first response on it goes the usual way).
        sock.sendall(b"GET /api/warm HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(reader.response()[1])["target"] == "/v1/warm"
        sock.sendall(_pipeline(sizes))
        time.sleep(1.0)
        for i, size in enumerate(sizes):
            head, body = reader.response()
            assert head.startswith(b"HTTP/1.1 200 ")
            assert body == b"x" * size, f"response {2 * i} is not the {size}-byte body"
            head, body = reader.response()
            assert json.loads(body)["target"] == f"/v1/echo{i}"
        assert reader.data == b""
    assert "[alert]" not in gw.errors()


def test_requests_stay_whole_after_large_uploads_on_reused_connections(start_gateway, backend):
    port = free_port()
    start_gateway(config(port, backend, keepalive=1), port)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        reader = Reader(sock)
        for i in range(6):
            body = bytes([i]) * (2_000_000 if i % 2 else 100)
            sock.sendall(b"POST /api/up%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % (i, len(body)) + body)
            seen = json.loads(reader.response()[1])
            assert seen["target"] == f"/v1/up{i}"
            assert seen["body_length"] == len(body)
            assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
            sock.sendall(b"GET /api/after%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            seen = json.loads(reader.response()[1])
            assert seen["target"] == f"/v1/after{i}"
            assert seen["body_length"] == 0
