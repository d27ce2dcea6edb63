"""One worker of a pool: an identity (index, link, MAC) that outlives the QEMU processes behind it."""

import collections
import time

from gateway._select import load_fast
from gateway.unikernel import wire

# States seen in the status file; "ready" is the only one that takes requests. A "spare" is booted
# and health-checked like a ready one but takes none until it stands in for one that left.
STARTING, READY, SPARE, DRAINING, RESTARTING, FAILED, RETIRED, STOPPED = (
    "starting", "ready", "spare", "draining", "restarting", "failed", "retired", "stopped")


class InstanceCore:
    """What the request path (pool_core.py) reads of an instance: its compiled twin in _fastpath/ukpath.pyx
    keeps these fields in C (name, state, fd, guest_mac, host_mac, inflight, inflight_frames, malformed, served,
    outbox, writing, reassembler, last_pong); here it is a plain base class."""


_FAST = load_fast("ukpath")
if _FAST is not None:
    InstanceCore = _FAST.InstanceCore    # noqa: F811


class Instance(InstanceCore):
    """A worker slot: fields under "process" belong to the supervisor thread, the rest to the event loop."""

    def __init__(self, pool_name, index, link, guest_mac, argv, console_log, stderr_log, accel):
        self.name = f"{pool_name}-{index}"
        self.index = index
        self.link = link
        self.fd = link.fileno()              # the link's socket, for the loop and wire.receive/send_frames
        self.guest_mac = wire.parse_mac(guest_mac)
        self.host_mac = link.mac
        self.argv = argv
        self.console_log = console_log
        self.stderr_log = stderr_log
        self.accel = accel
        # Process (supervisor thread).
        self.qemu_link = link                # the link its QEMU is wired to: `link` once the loop has seen a resume
        self.stderr_now = stderr_log         # where its QEMU's stderr goes (a resumed paused one: the pool's file)
        self.qmp = None                      # a resumed paused QEMU's monitor, until the resume is answered
        self.proc = None
        self.pid = 0
        self.pidfd = None
        self.generation = 0
        self.restarts = 0
        self.recent_exits = collections.deque()
        self.restart_at = None
        self.kill_reason = ""
        self.last_exit = ""
        # Event loop.
        self.state = STARTING
        self.spare = False                   # its role: booted to stand by (pool.spares), not to serve
        self.last_pong = time.monotonic()    # read by the supervisor to judge a hang
        self.ping_due = 0.0                  # when the pool pings it next (time.monotonic)
        self.inflight = {}                   # req_id -> Call
        self.inflight_frames = 0
        self.outbox = []                     # frames not sent yet (pool._send, pool._push)
        self.writing = False                 # waiting for the link to take more
        self.reassembler = wire.Reassembler()
        self.malformed = 0
        self.boot_ping_from = 0
        self.spawned_at = 0.0                # loop time of the last QEMU start
        self.served = 0

    def has_room(self, frames, tunables):
        """Whether one more request of `frames` frames fits under the in-flight limits."""
        if len(self.inflight) >= tunables.max_inflight:
            return False
        # A request bigger than the whole budget still goes alone: the link's flow control paces it.
        return not self.inflight or self.inflight_frames + frames <= tunables.max_inflight_frames

    def snapshot(self):
        """Per-instance state for the status file."""
        return {"name": self.name, "state": self.state, "pid": self.pid, "restarts": self.restarts,
                "accelerator": self.accel, "last_exit": self.last_exit, "in_flight": len(self.inflight),
                "served": self.served, "malformed_replies": self.malformed,
                "tap": getattr(self.link, "name", None), "console": self.console_log}
