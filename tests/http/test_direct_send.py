"""Direct sends of the compiled connections (_fastpath/proxyproto.pyx, _Sender).

A write goes straight to the socket only while the transport holds none of the bytes
written before it. The transport here is a stand-in over a real socketpair whose
buffer the test controls, so the one ordering that matters is forced, not hoped for.
"""

import socket
import threading

import pytest

# No skip: CI builds the extensions before the tests, so a missing module is a failure.
from _fastpath import proxyproto


class HoldingTransport:
    """A transport that keeps what write() gives it until flush(), like a full uvloop buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.held = []

    def get_extra_info(self, name, default=None):
        return self.sock if name == "socket" else default

    def write(self, data):
        self.held.append(bytes(data))

    def get_write_buffer_size(self):
        return sum(map(len, self.held))

    def flush(self):
        self.sock.setblocking(True)
        self.sock.sendall(b"".join(self.held))
        self.sock.setblocking(False)
        self.held = []

    def is_closing(self):
        return False

    def close(self):
        pass


class Pool:
    def forget(self, conn):
        pass


class Peer:
    """The other end of the socketpair, read by a thread into ``data`` until it closes."""

    def __init__(self, sock):
        self.sock = sock
        self.data = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while chunk := self.sock.recv(65536):
            self.data += chunk

    def all(self):
        self.thread.join(5)
        return bytes(self.data)


proxyproto._allow_direct_sends(HoldingTransport)


@pytest.fixture
def link():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    transport = HoldingTransport(ours)
    conn = proxyproto.UpstreamConnection(Pool(), None)
    conn.connection_made(transport)
    yield conn, transport, theirs
    ours.close()
    theirs.close()


def test_nothing_jumps_ahead_of_bytes_the_transport_still_holds(link):
    conn, transport, peer = link
    conn.send(b"first ")             # the first write always goes through the transport
    assert transport.held == [b"first "]
    conn.send(b"second ")            # the socket has room, but "first " is still held
    assert transport.held == [b"first ", b"second "]
    transport.flush()
    conn.send(b"third")              # nothing held now: straight to the socket
    assert transport.held == []
    transport.sock.close()
    assert Peer(peer).all() == b"first second third"


def test_a_remainder_the_socket_cannot_take_goes_to_the_transport(link):
    conn, transport, peer = link
    conn.send(b"a")
    transport.flush()
    big = bytes(range(256)) * 40000          # 10 MB: more than a socketpair buffers
    conn.send(big)
    assert transport.held, "the socket took everything: the test needs a larger write"
    taken = len(big) - transport.get_write_buffer_size()
    assert taken > 0
    assert transport.held == [big[taken:]]
    conn.send(b"z")                          # held bytes first: this one waits too
    assert transport.held[-1] == b"z"
    reader = Peer(peer)
    transport.flush()
    transport.sock.close()
    assert reader.all() == b"a" + big + b"z"


def test_no_direct_sends_after_eof(link):
    conn, transport, peer = link
    conn.send(b"x")
    transport.flush()
    conn.eof_received()              # the transport closes itself after this
    conn.send(b"y")                  # so what happens to these bytes is its decision
    assert transport.held == [b"y"]
    transport.sock.close()
    assert Peer(peer).all() == b"x"
