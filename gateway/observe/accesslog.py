"""Access logs in nginx's log_format language, buffered and flushed by the app's sweep."""

from __future__ import annotations

import os

from gateway.http.variables import compile_template
from gateway.observe.errorlog import format_os_error, log

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')

# Flush early when this much is waiting, so a burst never holds much memory.
FLUSH_AT = 64 * 1024


class AccessLogFile:
    """One log file shared by every location that names it (by path)."""

    def __init__(self, path: str):
        self.path = path
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            log.alert(format_os_error("open", self.path, exc))
            return -1

    def write(self, line: bytes):
        self.pending.append(line)
        self.pending_size += len(line)
        if self.pending_size >= FLUSH_AT:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_size = 0
        if self.fd >= 0:
            try:
                os.write(self.fd, data)
            except OSError as exc:
                log.alert(format_os_error("write", self.path, exc))

    def reopen(self):
        self.flush()
        fd = self._open()
        if fd >= 0:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = fd

    def close(self):
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LogFormat:
    """A compiled log_format: empty variable values are written as "-", as nginx does."""

    __slots__ = ("parts", "keeps_empty", "render")

    def __init__(self, text: str):
        self.parts = compile_template(text).parts
        # nginx writes "-" for a variable not found, but a map's empty value as it is.
        self.keeps_empty = [getattr(part, "logs_empty", False) for part in self.parts]
        self.render = self._render_keeping if any(self.keeps_empty) else self._render

    def _render_keeping(self, request) -> bytes:
        out = []
        for part, keep in zip(self.parts, self.keeps_empty):
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(part(request) or ("" if keep else "-"))
        out.append("\n")
        return "".join(out).encode("utf-8", "replace")

    def _render(self, request) -> bytes:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(part(request) or "-")
        out.append("\n")
        return "".join(out).encode("utf-8", "replace")


class AccessLogs:
    """Every access log file of a worker, opened once per distinct path."""

    def __init__(self):
        self.files: dict[str, AccessLogFile] = {}
        self.formats: dict[str, LogFormat] = {}

    def resolve(self, specs) -> list[tuple[AccessLogFile, LogFormat]]:
        """The (file, format) pairs for a location's access_log settings."""
        out = []
        for spec in specs:
            file = self.files.get(spec.path)
            if file is None:
                file = self.files[spec.path] = AccessLogFile(spec.path)
            fmt = self.formats.get(spec.format)
            if fmt is None:
                fmt = self.formats[spec.format] = LogFormat(spec.format)
            out.append((file, fmt))
        return out

    def flush(self):
        for file in self.files.values():
            file.flush()

    def reopen(self):
        for file in self.files.values():
            file.reopen()

    def close(self):
        for file in self.files.values():
            file.close()
