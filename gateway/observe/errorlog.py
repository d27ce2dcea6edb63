"""The error log: nginx-format lines, per-target level filtering, reopen on USR1.

A line looks like ``2026/11/26 10:00:00 [warn] 1234#0: message``.  Every
file target is a file descriptor opened with O_APPEND, so lines written by the
master and the workers to the same file never interleave; a syslog target gets
the same line (date included, newline not) as one datagram whose severity is
the line's level, as nginx's ngx_syslog_writer sends it.  The rest of the
code logs through the module-level ``log`` (or ``get_logger()``).
"""

from __future__ import annotations

import os
import sys
import time

from gateway.errors import GatewayError
from gateway.observe.syslog import SyslogSender

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
SEVERITY = {name: rank for rank, name in enumerate(LEVELS)}   # lower is more severe
STDERR = "stderr"


def format_os_error(call: str, path: str | None, exc: OSError) -> str:
    """nginx's wording for a failed system call: ``open() "X" failed (2: No such file ...)``."""
    where = f' "{path}"' if path is not None else ""
    return f"{call}(){where} failed ({exc.errno}: {exc.strerror})"


class _Target:
    """One destination: a file path (or stderr) and the least severe level it accepts."""

    busy = False

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

    def write(self, line: bytes, rank: int, now: int) -> None:
        os.write(self.fd, line)

    def close(self) -> None:
        if self.path != STDERR:
            os.close(self.fd)


class _SyslogTarget:
    """An ``error_log syslog:...``: each line is a datagram, its level the syslog severity."""

    def __init__(self, path: str, level: str, peer):
        self.path = path
        self.level = level
        self.sender = SyslogSender(peer)
        self.busy = False      # set while sending: a failure logged meanwhile skips this target

    def write(self, line: bytes, rank: int, now: int) -> None:
        failed = self.sender.send(rank, line[:-1], now)     # the header's time is the line's
        if failed is not None and self.sender.should_report(time.monotonic()):
            raise _SyslogFailed(self.sender.describe(failed))

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self.sender.close()


class _SyslogFailed(Exception):
    """A syslog target lost a line; the message goes to the other targets."""


def _open_append(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise GatewayError(format_os_error("open", path, exc)) from exc


class ErrorLog:
    """Writes nginx-format lines to every configured target whose level admits them."""

    def __init__(self):
        self._targets = [_Target(STDERR, "notice")]

    def configure(self, targets: list[tuple]) -> None:
        """Replace the targets with ``[(path or "stderr", level), ...]`` or ``(path, level,
        syslog)`` for a `syslog:` one (config.model.Syslog); raises GatewayError."""
        for _, level, *_ in targets:
            if level not in SEVERITY:
                raise GatewayError(f'invalid log level "{level}"')
        new = []
        try:
            for path, level, *peer in targets or [(STDERR, "error")]:
                new.append(_SyslogTarget(path, level, peer[0]) if peer else _Target(path, level))
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
        return [t.path for t in self._targets if isinstance(t, _Target) and t.path != STDERR]

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
            if rank > SEVERITY[target.level] or target.busy:
                continue
            if line is None:
                now = int(time.time())
                stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now))
                line = f"{stamp} [{level}] {os.getpid()}#0: {message}\n".encode(errors="replace")
            try:
                target.write(line, rank, now)
            except OSError:
                pass      # a full disk or a closed stderr must not take the server down
            except _SyslogFailed as failed:
                target.busy = True
                try:
                    self.log("error", str(failed))
                finally:
                    target.busy = False

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
