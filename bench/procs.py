"""Child processes for the harness: start pinned, wait for a port, measure CPU, stop by pid."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536
# HAProxy prints NOTICE lines before the ALERT that says why it stopped.
ERROR_MARKS = ("ALERT", "[emerg]", "Error", "error:", "Traceback")


class StartError(Exception):
    """A process did not come up; the message is what the report shows."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_nofile() -> None:
    """Raise this process's open-files limit as far as allowed (run in a child before exec)."""
    # 1,000 client connections plus as many upstream ones exceed the usual 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            return
        except (ValueError, OSError):
            pass   # not allowed to raise the hard limit (no CAP_SYS_RESOURCE): use it all
    want = NOFILE if hard == resource.RLIM_INFINITY else min(hard, NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def _child_setup() -> None:
    raise_nofile()
    # Own process group, so stopping a master also reaches anything it leaves behind.
    os.setsid()


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """argv prefixed with ``taskset -c CPUS`` when a CPU list is given."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


@dataclass
class Proc:
    """A started child: its argv, pid and where its stderr goes."""

    name: str
    argv: list[str]
    popen: subprocess.Popen
    stderr_path: str
    cwd: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def first_stderr_line(self) -> str:
        """The first stderr line that reads as an error (else the first line), or ''."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            return ""
        for line in lines:
            if any(mark in line for mark in ERROR_MARKS):
                return line
        return lines[0] if lines else ""

    def stderr_head(self, count: int = 5) -> list[str]:
        """The first count non-empty stderr lines."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                return [line.rstrip() for line in f if line.strip()][:count]
        except OSError:
            return []


def start(name: str, argv: list[str], cpus: str | None, workdir: str,
          env: dict | None = None, cwd: str | None = None) -> Proc:
    """Start argv pinned to cpus with a raised open-files limit; stdout/stderr go to files."""
    argv = pinned(argv, cpus)
    stderr_path = os.path.join(workdir, f"{name}.stderr")
    stdout_path = os.path.join(workdir, f"{name}.stdout")
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 preexec_fn=_child_setup, env=env, cwd=cwd)
    return Proc(name, argv, popen, stderr_path, cwd)


def wait_port(proc: Proc, port: int, timeout: float = 10.0) -> None:
    """Wait until 127.0.0.1:port accepts, or raise StartError (exit or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.popen.poll()
        if code is not None:
            line = proc.first_stderr_line() or f"exited with status {code}"
            raise StartError(f"failed to start: {line}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    line = proc.first_stderr_line()
    raise StartError(f"failed to start: port {port} not open after {timeout:g}s"
                     + (f" ({line})" if line else ""))


def stop(proc: Proc, timeout: float = 5.0) -> None:
    """Stop a child by its pid (TERM, then KILL), and anything left in its process group."""
    if proc.popen.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout)
    # The group id is the child's own pid (setsid): workers a crashed master left behind.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants (master, workers, QEMU children...)."""
    tree = _children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, ()))
    return pids


def cpu_seconds(root: int) -> float:
    """User+system CPU of root's process tree, reaped children included (from /proc/PID/stat)."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name: state is field 3, utime..cstime are 14..17.
        rest = stat[stat.rindex(")") + 2:].split()
        ticks += sum(int(v) for v in rest[11:15])
    return ticks / CLK_TCK
