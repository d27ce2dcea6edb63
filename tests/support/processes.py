"""Start and stop real processes for tests: the gateway, nginx, echo backends.

Every process is started with Popen and stopped by its pid (TERM, then KILL),
on free loopback ports chosen at run time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"


# The top of a config that both nginx and the gateway run in a test folder (nginx's workers
# read files under pytest's folder, which only root may enter).
SIDE_BY_SIDE_HEAD = """user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events { worker_connections 64; }
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0,
                  host: str = "127.0.0.1"):
    """Wait until something accepts on host:port, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:"
                               f" {_output(proc)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _output(proc) -> str:
    try:
        out, err = proc.communicate(timeout=1)
    except Exception:   # noqa: BLE001 - best effort for a failure message
        return ""
    return ((err or b"") + (out or b"")).decode(errors="replace")[-2000:]


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10.0):
    """Stop a process we started, by pid: ``sig`` first, SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class Gateway:
    """The gateway started from a config file as a real process (``python -m gateway``)."""

    def __init__(self, tmp: Path, config: str, port: int, env: dict | None = None):
        self.dir = tmp
        self.port = port
        self.conf = tmp / "gateway.conf"
        self.conf.write_text(config)
        self.error_log = tmp / "error.log"
        environment = dict(os.environ, **(env or {}))
        environment.setdefault("PYTHONPATH", str(ROOT))
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "gateway", "-p", str(tmp), "-c", str(self.conf), "-g", "daemon off;"],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_port(port, self.proc)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def errors(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self, sig=signal.SIGTERM):
        stop(self.proc, sig)


class FaultUpstream:
    """tests/support/fault_upstream.py in its own process: one misbehaviour per path."""

    def __init__(self, log: Path, port: int | None = None):
        self.port = port or free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "tests" / "support" / "fault_upstream.py"),
             "--port", str(self.port), "--log", str(log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.proc)

    def stop(self):
        stop(self.proc)


class Nginx:
    """Real nginx (Debian's nginx-light) from a config text, in the foreground."""

    def __init__(self, tmp: Path, config: str, port: int):
        self.dir = tmp
        self.port = port
        (tmp / "logs").mkdir(exist_ok=True)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(config)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_port(port, self.proc)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        stop(self.proc, signal.SIGQUIT)


class EchoBackend:
    """tests/support/echo_backend.py in its own process: answers with what it received."""

    def __init__(self, name: str = "backend", port: int | None = None, log: Path | None = None,
                 log_bodies: bool = False):
        self.name = name
        self.port = port or free_port()
        extra = ["--log", str(log)] if log else []
        if log_bodies:
            extra.append("--log-bodies")
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "tests" / "support" / "echo_backend.py"),
             "--port", str(self.port), "--name", name, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM):
        stop(self.proc, sig)


class Haproxy:
    """HAProxy (Debian's) in the foreground from a config text: a real sender of PROXY headers."""

    def __init__(self, tmp: Path, config: str, port: int):
        self.dir = tmp
        self.port = port
        self.conf = tmp / "haproxy.cfg"
        self.conf.write_text(config)
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_port(port, self.proc)

    def stop(self):
        stop(self.proc, signal.SIGTERM)


class WsBackend:
    """bench/ws_backend.py in its own process: a real WebSocket server (see its paths)."""

    def __init__(self, max_size: int = 1 << 20):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.ws_backend", "--port", str(self.port),
             "--max-size", str(max_size)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self):
        stop(self.proc, signal.SIGTERM)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (a master and its workers)."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for one in pids:
        try:
            with open(f"/proc/{one}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total
