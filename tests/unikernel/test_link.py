"""The socketpair link on its own: non-blocking, one datagram per frame, the netdev string for QEMU."""

import socket

from gateway.unikernel.link import SocketpairLink


def test_socketpair_link_moves_frames_both_ways():
    link = SocketpairLink()
    try:
        fd = link.pass_fds[0]
        assert link.netdev_args() == f"dgram,id=n0,local.type=fd,local.str={fd}"
        assert link.recv() is None                      # non-blocking: nothing waiting
        peer = socket.socket(fileno=socket.dup(fd))     # stands in for QEMU's end
        try:
            assert link.send(b"a" * 1514)
            assert peer.recv(2000) == b"a" * 1514
            peer.send(b"reply")
            assert link.recv() == b"reply"
            sent = 0
            while link.send(b"x" * 1514):               # fills up, then says so instead of blocking
                sent += 1
                assert sent < 100_000
            assert sent > 0
        finally:
            peer.close()
        assert isinstance(link.fileno(), int)
    finally:
        link.close()
