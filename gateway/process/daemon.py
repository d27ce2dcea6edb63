"""``daemon on``: detach from the terminal, and tell the starting command whether startup worked."""

from __future__ import annotations

import os
import sys


class ReadyPipe:
    """The daemon's line back to the command that started it: ``ok`` or the startup error."""

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def report(self, error: str | None) -> None:
        """Tell the waiting command that startup succeeded (None) or failed (a message); once."""
        if self.fd is None:
            return
        line = "ok\n" if error is None else f"error {error}\n"
        try:
            os.write(self.fd, line.encode(errors="replace"))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        """Drop this process's end (forked workers must not keep the command waiting)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def daemonize(keep_stderr: bool) -> ReadyPipe:
    """Double fork and setsid; the original process waits for the report and exits with it."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        os._exit(_wait_for_report(read_fd))
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)       # the session leader leaves, so the daemon can never regain a terminal
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return ReadyPipe(write_fd)


def _wait_for_report(fd: int) -> int:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    text = data.decode(errors="replace").strip()
    if text == "ok":
        return 0
    if text.startswith("error "):
        message = text[len("error "):]
    else:
        message = "the daemon exited during startup"
    sys.stderr.write(f"gateway: [emerg] {message}\n")
    sys.stderr.flush()
    return 1
