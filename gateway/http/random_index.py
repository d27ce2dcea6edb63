"""``random_index on`` (ngx_http_random_index_module): a directory URI is answered by an
internal redirect to one of its files, picked at random.

nginx runs it in the content phase before ``index`` and ``autoindex``: a directory with no
regular file (names starting with "." left out, symlinks judged by what they point to) is
left to them.
"""

from __future__ import annotations

import errno
import os
import random

from gateway.observe.errorlog import format_os_error, log

_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)


def pick(request, base: str, uri: str):
    """An InternalRedirect to ``uri`` + a random file of ``base`` (the directory the URI maps
    to), an ErrorStatus, or None when nginx's module declines."""
    from gateway.http.static import ErrorStatus, InternalRedirect
    from gateway.http.rewrite import client_context
    # nginx drops the last character of the mapped path: the URI's "/".
    path = base[:-1]
    try:
        entries = os.scandir(path)
    except OSError as exc:
        status = 404 if exc.errno in _NOT_FOUND else 403 if exc.errno == errno.EACCES else 500
        level = "crit" if status == 500 else "error"
        log.log(level, f"*{request.connection_id} {format_os_error('opendir', path, exc)}"
                f"{client_context(request)}")
        return ErrorStatus(status)
    names = []
    with entries:
        try:
            for entry in entries:
                if entry.name[0] != "." and entry.is_file():
                    names.append(entry.name)
        except OSError as exc:
            log.crit(f"*{request.connection_id} {format_os_error('readdir', path, exc)}"
                     f"{client_context(request)}")
            return ErrorStatus(500)
    if not names:
        return None
    return InternalRedirect(uri + random.choice(names))
