"""Links that carry Ethernet frames between the gateway and one QEMU worker: a socketpair or a tap.

Both are non-blocking and expose fileno() for loop.add_reader/add_writer; send() returns False when the
link is full (wait for writability), recv() returns None when nothing is waiting.
"""

import ctypes
import fcntl
import os
import select
import socket
import struct

from gateway.errors import LaunchFailed
from gateway.unikernel.wire import ETHERTYPE, FRAME_MAX, parse_mac

HOST_MAC = "02:00:00:00:00:01"      # locally administered; the guest replies to whatever sent the request
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 8 << 20


class _FrameSocket:
    """What both links share: one non-blocking socket ``self.sock`` carrying whole frames."""

    sock = None

    def fileno(self):
        """Our end, for add_reader/add_writer."""
        return self.sock.fileno()

    def send(self, frame):
        """Send one frame; False if the link is full right now."""
        try:
            self.sock.send(frame)
        except BlockingIOError:
            return False
        return True

    def recv(self):
        """One frame, or None if none is waiting."""
        try:
            return self.sock.recv(FRAME_MAX + 64)
        except BlockingIOError:
            return None


class SocketpairLink(_FrameSocket):
    """A SOCK_DGRAM socketpair: one datagram per frame; QEMU gets the other end as a dgram netdev."""

    def __init__(self, host_mac=HOST_MAC):
        self.mac = parse_mac(host_mac)
        self.sock, self._peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.pass_fds = (self._peer.fileno(),)

    def netdev_args(self, netdev_id="n0"):
        """The -netdev value for QEMU (the fd must be in pass_fds)."""
        return f"dgram,id={netdev_id},local.type=fd,local.str={self._peer.fileno()}"

    def discard_stale(self):
        """Drop frames queued for a worker that died, so its replacement starts clean."""
        self._peer.setblocking(False)
        try:
            while True:
                self._peer.recv(FRAME_MAX + 64)
        except OSError:
            pass

    def close(self):
        """Close both ends (the worker's end too: it is kept open for restarts)."""
        self.sock.close()
        self._peer.close()


class TapLink(_FrameSocket):
    """A tap interface owned by this process: QEMU gets the tap fd, we talk through an AF_PACKET socket.

    The tap never gets an IP address and has IPv6 disabled, so nothing but our frames use it; it is not
    persistent, so it disappears when the last fd (ours and QEMU's) closes.
    """

    def __init__(self, name, host_mac=HOST_MAC):
        if len(name.encode()) > 15:
            raise LaunchFailed(f'tap name "{name}" is longer than 15 bytes')
        self.name = name
        self.mac = parse_mac(host_mac)
        self.sock = None
        try:
            self._tap = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise LaunchFailed(f"cannot open /dev/net/tun for tap {name}: {exc.strerror}") from exc
        try:
            ifr = struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI)
            fcntl.ioctl(self._tap, _TUNSETIFF, ifr)
            self._disable_ipv6()
            self._set_up()
            # Protocol 0 here, the EtherType at bind: a packet socket created with a protocol is
            # hooked on every interface at once, and re-binding it waits out an RCU grace period
            # (synchronize_net, 5-30 ms measured here) on every tap set up.
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.sock.bind((name, ETHERTYPE))
            self._filter_destination()
            self._grow_receive_buffer()
            self.sock.setblocking(False)
        except OSError as exc:
            self.close()
            raise LaunchFailed(f"cannot set up tap {name}: {exc.strerror or exc}") from exc
        self.pass_fds = (self._tap,)

    def _disable_ipv6(self):
        # Before the link comes up, so the kernel never sends its IPv6 chatter onto it.
        with open(f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6", "w") as fh:
            fh.write("1")

    def _set_up(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH22x", self.name.encode(), 0))
            flags = struct.unpack_from("16sH", ifr)[1] | _IFF_UP
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", self.name.encode(), flags))

    def _filter_destination(self):
        # Accept only frames addressed to our MAC: this drops our own outgoing frames (a packet socket
        # sees both directions) and frames meant for other gateway processes on the same tap.
        hi, lo = struct.unpack("!IH", self.mac)
        prog = [(0x20, 0, 0, 0), (0x15, 0, 3, hi), (0x28, 0, 0, 4), (0x15, 0, 1, lo),
                (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
        code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        buf = ctypes.create_string_buffer(code)
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)

    def _grow_receive_buffer(self):
        # Unlike a socketpair, a packet socket drops what overflows its buffer: a 1 MiB reply is ~710
        # frames arriving faster than one Python loop iteration may read them.
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def netdev_args(self, netdev_id="n0"):
        """The -netdev value for QEMU (the tap fd must be in pass_fds)."""
        return f"tap,id={netdev_id},fd={self._tap}"

    def discard_stale(self):
        """Drop frames queued on the tap for a worker that died, so its replacement starts clean."""
        while self._tap is not None and _readable(self._tap):
            try:
                os.read(self._tap, FRAME_MAX + 64)
            except OSError:
                return

    def close(self):
        """Close the socket and the tap fd; the tap goes away once QEMU has exited too."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._tap is not None:
            os.close(self._tap)
            self._tap = None


def _readable(fd):
    """Whether fd has input now (poll: descriptors may be numbered 1024 and up)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
