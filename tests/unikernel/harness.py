"""A blocking driver for one real QEMU worker, shared by the unikernel tests and bench/unikernel_metrics."""

import os
import select
import subprocess
import time

from gateway.errors import MalformedFrame
from gateway.unikernel import qemu, wire
from gateway.unikernel.link import SocketpairLink
from gateway.unikernel.prestart import monitor_pair

GUEST_MAC = "52:54:00:00:00:07"


class Worker:
    """One QEMU microvm running a service image, reached over a link; stop() kills it by pid."""

    def __init__(self, service, log_dir, *, link=None, append="", instance_id=1, memory_mb=16, paused=False):
        self.service = service
        self.link = link if link is not None else SocketpairLink()
        self.guest_mac = wire.parse_mac(GUEST_MAC)
        self.serial_log = os.path.join(log_dir, f"{service}-{instance_id}.console")
        self.stderr_log = os.path.join(log_dir, f"{service}-{instance_id}.stderr")
        # paused: started at reset with a QMP monitor (prestart.py); wait_paused(), then resume().
        self.monitor, self._monitor_peer = monitor_pair() if paused else (None, None)
        self.argv = qemu.build_argv(
            qemu.find_image(service), memory_mb=memory_mb, accel=qemu.choose_accel("auto"),
            netdev_args=self.link.netdev_args(), serial_log=self.serial_log,
            append=f"id={instance_id} {append}".strip(), mac=GUEST_MAC, qemu=qemu.check_qemu(),
            monitor_fd=self._monitor_peer.fileno() if paused else None)
        self.ids = wire.RequestIds()
        self.reassembler = wire.Reassembler()
        self.malformed_replies = 0
        self.proc = None
        self._stray = {}

    def start(self):
        """Start QEMU (returns at once)."""
        fds = self.link.pass_fds + ((self._monitor_peer.fileno(),) if self.monitor else ())
        with open(self.stderr_log, "wb") as err:
            self.proc = subprocess.Popen(self.argv, pass_fds=fds, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        if self._monitor_peer is not None:
            self._monitor_peer.close()
            self._monitor_peer = None
        return self

    def wait_paused(self, timeout=20.0):
        """Until a paused worker's QEMU has loaded (its monitor greeted and negotiated); seconds taken."""
        t0 = time.perf_counter()
        while not self.monitor.negotiated:
            if time.perf_counter() - t0 > timeout or self.proc.poll() is not None:
                raise AssertionError(f"{self.service}: no QMP monitor; stderr: {open(self.stderr_log).read()!r}")
            select.select([self.monitor], [], [], 0.5)
            self.monitor.read()
            if self.monitor.greeted:
                self.monitor.negotiate()
        return time.perf_counter() - t0

    def resume(self):
        """Run a paused worker's guest (QMP cont)."""
        self.monitor.send(("cont", None))

    def wait_ready(self, timeout=20.0):
        """Ping until the kernel answers; the time it took, in seconds."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            rid = self.ids.next()
            self.link.send(wire.encode(self.guest_mac, self.link.mac, rid, wire.Op.PING)[0])
            select.select([self.link], [], [], 0.002)
            self._drain()
            # Any ping answered counts: pings sent before QEMU opened the link wait in its queue.
            if any(m.op == wire.Op.PING for m in self._stray.values()):
                self._stray.clear()
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"{self.service} worker did not answer a ping; console: {self.console()!r}")

    def request(self, op, payload=b"", *, now=0, timeout=30.0):
        """Send one request and wait for its reply Message."""
        rid = self.ids.next()
        frames = wire.encode(self.guest_mac, self.link.mac, rid, op, payload, now=now)
        return self.exchange(frames, rid, timeout)

    def exchange(self, frames, rid, timeout=30.0):
        """Send frames (whatever they are) and wait for the reply to rid."""
        self.send_frames(frames, timeout)
        return self.reply(rid, timeout)

    def send_frames(self, frames, timeout=30.0):
        """Send frames in order, reading replies meanwhile so neither direction can stall the other."""
        deadline = time.monotonic() + timeout
        frames = list(frames)
        i = 0
        while i < len(frames):
            readable, writable, _ = select.select([self.link], [self.link], [], max(0.0, deadline - time.monotonic()))
            if readable:
                self._drain()
            while writable and i < len(frames) and self.link.send(frames[i]):
                i += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out sending; console: {self.console()!r}")

    def reply(self, rid, timeout=30.0):
        """Wait for the reply to rid."""
        msg = self._wait_for(rid, timeout)
        if msg is None:
            raise AssertionError(f"no reply to request {rid}; console: {self.console()!r}")
        return msg

    def send_raw(self, frame):
        """Send one frame as is, waiting for room."""
        while not self.link.send(frame):
            select.select([], [self.link], [], 1.0)
            self._drain()

    def stats(self):
        """The kernel's counters by name."""
        msg = self.request(wire.Op.STATS)
        return wire.parse_stats(msg.payload)

    def console(self):
        """What the guest printed on COM1 so far."""
        try:
            with open(self.serial_log, errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def _drain(self):
        while (frame := self.link.recv()) is not None:
            try:
                msg = self.reassembler.feed(frame)
            except MalformedFrame:
                self.malformed_replies += 1
                continue
            if msg is not None:
                self._stray[msg.req_id] = msg

    def _wait_for(self, rid, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            if rid in self._stray:
                return self._stray.pop(rid)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.link], [], [], left)

    def stop(self):
        """Kill QEMU by pid and close the link."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        finally:
            self.link.close()
            if self.monitor is not None:
                self.monitor.close()
