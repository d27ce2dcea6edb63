"""disable_symlinks: files opened one path component at a time, as nginx's open file cache does.

With ``on`` every component is opened with openat(O_NOFOLLOW) from the one before, starting
at "/" (or at the ``from=`` part, which is opened as it is): a symlinked last component fails
with ELOOP (nginx answers 403), a symlinked directory on the way with ENOTDIR, because
directories are opened O_PATH|O_DIRECTORY|O_NOFOLLOW (nginx answers 404). With
``if_not_owner`` components are followed, but one whose owner differs from the owner of the
link itself fails with ELOOP (ngx_openat_file_owner). Errors are raised as the OSError the
failing call gave; callers map them to statuses as they do for open().
"""

from __future__ import annotations

import errno
import os

_SEARCH = os.O_PATH | os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK      # NGX_FILE_SEARCH


def mode_for(request, settings, path: str) -> tuple[str, int]:
    """(mode, length of the from= prefix or 0) for ``path`` (ngx_http_set_disable_symlinks)."""
    mode = settings.disable_symlinks
    source = settings.disable_symlinks_from
    if source is None:
        return mode, 0
    from gateway.http.static import _render
    prefix = _render(source, request)
    if not prefix or len(prefix) > len(path) or not path.startswith(prefix):
        return mode, 0
    if len(prefix) == len(path):
        return "off", 0
    if path[len(prefix)] == "/":
        return mode, len(prefix)
    if prefix.endswith("/"):
        return mode, len(prefix) - 1
    return mode, 0


def open_path(path: str, flags: int, mode: str, start: int = 0) -> int:
    """A descriptor for ``path`` opened with ``flags``, refusing symlinks as ``mode`` says."""
    raw = os.fsencode(path)
    if start:
        at = os.open(raw[:start], _SEARCH)
        rest = raw[start + 1:]
    elif raw.startswith(b"/"):
        at = os.open(b"/", _SEARCH)
        rest = raw[1:]
    else:
        at = None
        rest = raw
    try:
        parts = rest.split(b"/")
        last = parts.pop()
        for part in parts:
            if not part:
                continue
            fd = _open_at(at, part, _SEARCH, mode)
            if at is not None:
                os.close(at)
            at = fd
        if not last:
            # A trailing slash: the last component must be a directory; reopen it.
            return os.open(b".", flags, dir_fd=at)
        return _open_at(at, last, flags, mode)
    finally:
        if at is not None:
            os.close(at)


def _open_at(at, name: bytes, flags: int, mode: str) -> int:
    if mode != "if_not_owner":
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=at)
    fd = os.open(name, flags, dir_fd=at)
    try:
        link = os.stat(name, dir_fd=at, follow_symlinks=False)
        if os.fstat(fd).st_uid != link.st_uid:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    except BaseException:
        os.close(fd)
        raise
    return fd


def stat_path(request, settings, path: str):
    """os.stat's answer for ``path`` with the location's disable_symlinks."""
    mode, start = mode_for(request, settings, path)
    if mode == "off":
        return os.stat(path)
    fd = open_path(path, os.O_RDONLY | os.O_NONBLOCK, mode, start)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def open_file(request, settings, path: str) -> int:
    """os.open(path, O_RDONLY | O_NONBLOCK) with the location's disable_symlinks."""
    mode, start = mode_for(request, settings, path)
    if mode == "off":
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    return open_path(path, os.O_RDONLY | os.O_NONBLOCK, mode, start)
