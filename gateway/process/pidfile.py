"""The pid file: written by the master, read by ``gateway -s``, removed at exit."""

from __future__ import annotations

import os

from gateway.errors import GatewayError
from gateway.observe.errorlog import format_os_error

MASTER_NAME = "gateway: master"    # what the master calls itself (see process.title)


def write(path: str, pid: int) -> None:
    """Write ``pid`` and a newline to ``path`` (replacing it); raises GatewayError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise GatewayError(format_os_error("open", path, exc)) from exc
    try:
        os.write(fd, f"{pid}\n".encode())
    except OSError as exc:
        raise GatewayError(format_os_error("write", path, exc)) from exc
    finally:
        os.close(fd)


def read(path: str) -> int:
    """The pid stored in ``path``; raises GatewayError in nginx's wording."""
    try:
        with open(path, "rb") as file:
            raw = file.read(64)
    except OSError as exc:
        raise GatewayError(format_os_error("open", path, exc)) from exc
    text = raw.decode(errors="replace").rstrip("\r\n")
    if not text.isdigit() or int(text) <= 0:
        raise GatewayError(f'invalid PID number "{text}" in "{path}"')
    return int(text)


def remove(path: str, pid: int | None = None) -> None:
    """Delete ``path`` if it exists (and, given ``pid``, only if it still names that process)."""
    try:
        if pid is not None and read(path) != pid:
            return      # a newer master already owns the file
        os.unlink(path)
    except (OSError, GatewayError):
        pass


def running_master(path: str) -> int | None:
    """The pid of a live gateway master named by ``path``, or None (no file, stale, or not ours)."""
    try:
        pid = read(path)
        with open(f"/proc/{pid}/comm") as file:
            name = file.read().strip()
    except (GatewayError, OSError):
        return None
    return pid if name == MASTER_NAME and pid != os.getpid() else None
