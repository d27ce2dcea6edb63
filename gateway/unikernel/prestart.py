"""Paused QEMU processes a pool keeps ready (`prestart N`): started with -S, so QEMU has loaded its
libraries, realised its devices and loaded the image, but the guest has not run an instruction; an
instance that must start (a restart, a growth, a spare's replacement) resumes one over QMP instead of
starting QEMU, which skips the ~17 ms QEMU spends before the guest runs.

A paused QEMU is wired to its own link (tap or socketpair) from the start, so the instance that takes
it takes its link too (pool.py swaps them); its console goes nowhere until the resume points it at the
instance's console file. The QMP monitor is one end of a socketpair QEMU inherits (`-chardev socket,fd=N`):
no path in the filesystem, nothing to connect to, and the capabilities are negotiated while it waits,
so a resume is one write: chardev-change and cont.

Threads: the supervisor thread starts, watches and resumes paused QEMUs; the event loop only creates
the PausedQemu (with its link) and reads pid/state for the status file.
"""

import collections
import json
import socket

# States in the status file.
LOADING, PAUSED, RESTARTING, FAILED = "loading", "paused", "restarting", "failed"


class PausedQemu:
    """One pre-started QEMU: its link (the loop's until an instance takes it) and its process (the thread's)."""

    def __init__(self, link, stderr_log):
        self.link = link
        self.stderr_log = stderr_log
        self.state = LOADING
        # Process (supervisor thread).
        self.proc = None
        self.pid = 0
        self.pidfd = None
        self.qmp = None
        self.restarts = 0
        self.recent_exits = collections.deque()
        self.restart_at = None
        self.started_at = 0.0
        self.last_exit = ""

    def snapshot(self):
        """For the status file."""
        return {"state": self.state, "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                "tap": getattr(self.link, "name", None)}


class Monitor:
    """The gateway's end of one QEMU's QMP socket, non-blocking: negotiates, sends, reads replies."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)
        self.greeted = False
        self.negotiated = False
        self.pending = collections.deque()     # commands sent, replies not read yet
        self._buf = b""

    def fileno(self):
        """For poll."""
        return self.sock.fileno()

    def send(self, *commands):
        """Send commands ((name, arguments) pairs) in one write; OSError when QEMU is gone."""
        data = b""
        for name, args in commands:
            msg = {"execute": name} if args is None else {"execute": name, "arguments": args}
            data += json.dumps(msg).encode() + b"\n"
            self.pending.append(name)
        # A few hundred bytes into an empty socket buffer: a non-blocking send takes them whole.
        self.sock.sendall(data)

    def negotiate(self):
        """Leave capabilities negotiation (needed before any other command), once."""
        if not self.negotiated and "qmp_capabilities" not in self.pending:
            self.send(("qmp_capabilities", None))

    def resume(self, console_log):
        """Point the console at console_log and run the guest."""
        commands = []
        if not self.negotiated and "qmp_capabilities" not in self.pending:
            commands.append(("qmp_capabilities", None))
        commands.append(("chardev-change", {"id": "con0", "backend": {
            "type": "file", "data": {"out": console_log, "append": True}}}))
        commands.append(("cont", None))
        self.send(*commands)

    def read(self):
        """Read what QEMU sent; [(command, error text)] for commands it refused. EOFError when closed."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        if not data:
            raise EOFError
        self._buf += data
        refused = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "QMP" in msg:
                self.greeted = True
            elif ("return" in msg or "error" in msg) and self.pending:
                name = self.pending.popleft()
                if name == "qmp_capabilities":
                    self.negotiated = "return" in msg
                if "error" in msg:
                    refused.append((name, str(msg["error"].get("desc", msg["error"]))))
            # Events (RESUME, STOP, ...) say nothing we need.
        return refused

    def close(self):
        """Close our end (QEMU keeps running)."""
        self.sock.close()


def monitor_pair():
    """(our Monitor, QEMU's socket) for -chardev socket,fd=N."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.set_inheritable(False)
    return Monitor(ours), theirs
