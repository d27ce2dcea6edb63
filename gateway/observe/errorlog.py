"""The error log: nginx-format lines, per-target level filtering, reopen on USR1.

A line looks like ``2026/11/26 10:00:00 [warn] 1234#0: message``.  Every
target is a file descriptor opened with O_APPEND, so lines written by the
master and the workers to the same file never interleave.  The rest of the
code logs through the module-level ``log`` (or ``get_logger()``).
"""

from __future__ import annotations

import os
import sys
import time

from gateway.errors import GatewayError

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
SEVERITY = {name: rank for rank, name in enumerate(LEVELS)}   # lower is more severe
STDERR = "stderr"


def format_os_error(call: str, path: str | None, exc: OSError) -> str:
    """nginx's wording for a failed system call: ``open() "X" failed (2: No such file ...)``."""
    where = f' "{path}"' if path is not None else ""
    return f"{call}(){where} failed ({exc.errno}: {exc.strerror})"


class _Target:
    """One destination: a file path (or stderr) and the least severe level it accepts."""

    def __init__(self, path: str, level: str):
        self.path = path
        self.level = level
        self.fd = 2 if path == STDERR else _open_append(path)

    def reopen(self) -> None:
        if self.path == STDERR:
            return
        fd = _open_append(self.path)
        os.dup2(fd, self.fd, inheritable=False)   # keep the number: holders of it follow along
        os.close(fd)

    def close(self) -> None:
        if self.path != STDERR:
            os.close(self.fd)


def _open_append(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise GatewayError(format_os_error("open", path, exc)) from exc


class ErrorLog:
    """Writes nginx-format lines to every configured target whose level admits them."""

    def __init__(self):
        self._targets = [_Target(STDERR, "notice")]

    def configure(self, targets: list[tuple[str, str]]) -> None:
        """Replace the targets with ``[(path or "stderr", level), ...]``; raises GatewayError."""
        for _, level in targets:
            if level not in SEVERITY:
                raise GatewayError(f'invalid log level "{level}"')
        new = []
        try:
            for path, level in targets or [(STDERR, "error")]:
                new.append(_Target(path, level))
        except GatewayError:
            for target in new:
                target.close()
            raise
        old, self._targets = self._targets, new
        for target in old:
            target.close()

    @property
    def paths(self) -> list[str]:
        """The file paths written to (stderr excluded)."""
        return [t.path for t in self._targets if t.path != STDERR]

    def writes_to_stderr(self) -> bool:
        """Whether some target is the standard error stream."""
        return any(t.path == STDERR for t in self._targets)

    def enabled(self, level: str) -> bool:
        """Whether a message at ``level`` would reach at least one target."""
        rank = SEVERITY[level]
        return any(rank <= SEVERITY[t.level] for t in self._targets)

    def log(self, level: str, message: str) -> None:
        """Write one line at ``level`` to every target that accepts it; never raises."""
        rank = SEVERITY[level]
        line = None
        for target in self._targets:
            if rank > SEVERITY[target.level]:
                continue
            if line is None:
                stamp = time.strftime("%Y/%m/%d %H:%M:%S")
                line = f"{stamp} [{level}] {os.getpid()}#0: {message}\n".encode(errors="replace")
            try:
                os.write(target.fd, line)
            except OSError:
                pass      # a full disk or a closed stderr must not take the server down

    def reopen(self) -> None:
        """Reopen every file target (after logrotate moved it); errors are logged, old fd kept."""
        for target in self._targets:
            try:
                target.reopen()
            except GatewayError as exc:
                self.log("alert", str(exc))

    def chown(self, uid: int, gid: int) -> None:
        """Give the log files to the worker user so workers can reopen them, as nginx does."""
        for path in self.paths:
            try:
                os.chown(path, uid, gid)
            except OSError as exc:
                self.log("alert", format_os_error("chown", path, exc))

    def debug(self, message: str) -> None:
        """Log at debug level."""
        self.log("debug", message)

    def info(self, message: str) -> None:
        """Log at info level."""
        self.log("info", message)

    def notice(self, message: str) -> None:
        """Log at notice level."""
        self.log("notice", message)

    def warn(self, message: str) -> None:
        """Log at warn level."""
        self.log("warn", message)

    def error(self, message: str) -> None:
        """Log at error level."""
        self.log("error", message)

    def crit(self, message: str) -> None:
        """Log at crit level."""
        self.log("crit", message)

    def alert(self, message: str) -> None:
        """Log at alert level."""
        self.log("alert", message)

    def emerg(self, message: str) -> None:
        """Log at emerg level."""
        self.log("emerg", message)


log = ErrorLog()


def get_logger() -> ErrorLog:
    """The process-wide error log every module writes to."""
    return log


def stderr_line(level: str, message: str, program: str = "gateway") -> None:
    """The short form used on the terminal before/without a log: ``gateway: [emerg] ...``."""
    try:
        sys.stderr.write(f"{program}: [{level}] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
