"""Helpers to run the real ``gateway`` command in a temporary prefix and look at its processes."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 20.0          # upper bound for anything to happen; never a timing assert


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = WAIT):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def status_field(pid: int, name: str) -> str:
    """A line's value from /proc/PID/status, e.g. ``Uid``."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(name)


def get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def try_get(port: int, path: str = "/"):
    """Like ``get`` but None when nothing answers."""
    try:
        return get(port, path, timeout=2.0)
    except OSError:
        return None


class Gateway:
    """One gateway installation: a prefix, a config file, a port, and the processes started."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.port = free_port()
        self.conf = os.path.join(prefix, "gateway.conf")
        self.pid_file = os.path.join(prefix, "logs", "gateway.pid")
        self.error_log = os.path.join(prefix, "logs", "error.log")
        self.stderr_path = os.path.join(prefix, "stderr.txt")
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        self.foreground: subprocess.Popen | None = None
        self.pids: set[int] = set()     # every gateway process seen, for teardown

    def write_config(self, http: str = None, main: str = "", workers: int = 2,
                     text: str = "hi") -> None:
        """A config file listening on ``self.port``; ``http`` replaces the default server block."""
        if http is None:
            http = (f'server {{ listen 127.0.0.1:{self.port}; '
                    f'location / {{ return 200 "{text}"; }} }}')
        with open(self.conf, "w") as file:
            file.write(f"worker_processes {workers};\n"
                       f"error_log {self.error_log} info;\n"
                       f"{main}\n"
                       "events { }\n"
                       f"http {{ access_log off;\n{http}\n}}\n")

    def command(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m gateway -p PREFIX -c CONF ARGS`` to completion."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=WAIT * 2, env=env or self.env())

    def argv(self, *args: str) -> list[str]:
        """The command line of this gateway with extra ``args``."""
        return [sys.executable, "-m", "gateway", "-p", self.prefix, "-c", self.conf, *args]

    def env(self) -> dict:
        """The environment the gateway runs in (the repository on the import path)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start_foreground(self, *args: str, env: dict | None = None) -> int:
        """Start with ``daemon off``; return the master pid once it answers HTTP."""
        with open(self.stderr_path, "ab") as stderr:
            self.foreground = subprocess.Popen(self.argv("-g", "daemon off;", *args),
                                               stdout=subprocess.DEVNULL, stderr=stderr,
                                               env=env or self.env())
        self.pids.add(self.foreground.pid)
        self._wait_serving(self.foreground.pid)
        return self.foreground.pid

    def start_daemon(self) -> int:
        """Start detached (the config's default); return the daemon's pid."""
        result = self.command()
        assert result.returncode == 0, result.stderr
        pid = self.read_pid()
        self.pids.add(pid)
        self._wait_serving(pid)
        return pid

    def _wait_serving(self, pid: int) -> None:
        def ready():
            if self.foreground is not None and self.foreground.poll() is not None:
                with open(self.stderr_path) as file:
                    pytest.fail(f"gateway exited: {file.read()}")
            return os.path.exists(self.pid_file) and try_get(self.port)
        wait_for(ready, "the gateway to answer")
        self.workers(pid)

    def read_pid(self) -> int:
        """The pid in the pid file."""
        with open(self.pid_file) as file:
            return int(file.read())

    def workers(self, master: int) -> list[int]:
        """The master's live workers (recorded for teardown)."""
        found = children(master)
        self.pids.update(found)
        return found

    def log_text(self) -> str:
        """The error log so far."""
        try:
            with open(self.error_log) as file:
                return file.read()
        except FileNotFoundError:
            return ""

    def wait_exit(self, pid: int) -> None:
        """Wait until ``pid`` is gone (reaping it if it is our child)."""
        if self.foreground is not None and self.foreground.pid == pid:
            self.foreground.wait(timeout=WAIT)
            return
        wait_for(lambda: not alive(pid), f"process {pid} to exit")

    def cleanup(self) -> None:
        """Stop every process seen: TERM, then KILL what is left."""
        for pid in list(self.pids):
            self.pids.update(children(pid))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids:
                if alive(pid):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 5
            while any(alive(pid) for pid in self.pids) and time.monotonic() < deadline:
                if self.foreground is not None:
                    self.foreground.poll()
                time.sleep(0.05)
        if self.foreground is not None:
            try:
                self.foreground.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
