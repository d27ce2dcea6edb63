"""nginx's limit_conn at request time: how many requests a key has in progress, across workers.

A request counts in each zone whose key it has from nginx's preaccess phase until it ends
(logged or its connection lost): the count is given back by the request's cleanup, as nginx's
pool cleanup does. A request is counted once, whatever internal redirects follow.
"""

from __future__ import annotations

from gateway.http import zones
from gateway.http.limit_req import key_function
from gateway.http.rewrite import client_context
from gateway.observe.errorlog import log

PASSED, REJECTED, REJECTED_DRY_RUN = "PASSED", "REJECTED", "REJECTED_DRY_RUN"
STATUS = " limit_conn"    # in request.vars, read by $limit_conn_status (gateway/http/variables.py)
MAX_KEY = 255


class LimitConns:
    """One level's limit_conn list with its status, log level and dry run."""

    __slots__ = ("limits", "status", "log_level", "dry_run")

    def __init__(self, settings):
        self.limits = [(limit.zone, key_function(limit.zone.key), limit.conn)
                       for limit in settings.limit_conns]
        self.status = settings.limit_conn_status
        self.log_level = settings.limit_conn_log_level
        self.dry_run = settings.limit_conn_dry_run

    def check(self, request) -> int:
        """0 to go on (the request now counts), else the status to answer with."""
        values = getattr(request, "vars", None)
        if values and STATUS in values:
            return 0
        now = zones.now_ms()
        taken = []
        for zone, key_of, limit in self.limits:
            key = key_of(request)
            if not key:
                continue
            if len(key) > MAX_KEY:
                log.error(f'*{request.connection_id} '
                          f'the value of the "{zone.key}" key is more than {MAX_KEY} bytes: '
                          f'"{key.decode("latin-1")}"{client_context(request)}')
                continue
            _set_status(request, PASSED)
            offset = zone.take(key, limit, now)
            if offset is None or offset == zones.BUSY:
                if offset is not None and log.enabled(self.log_level):
                    log.log(self.log_level, f'*{request.connection_id} limiting connections'
                            f'{", dry run," if self.dry_run else ""}'
                            f' by zone "{zone.name}"{client_context(request)}')
                for other, other_offset in taken:
                    other.give_back(other_offset)
                if self.dry_run:
                    _set_status(request, REJECTED_DRY_RUN)
                    return 0
                _set_status(request, REJECTED)
                return self.status
            taken.append((zone, offset))
        if taken:
            request.cleanup = _Release(taken)
        return 0


class _Release:
    """A request's counts, given back once when it ends."""

    __slots__ = ("taken",)

    def __init__(self, taken):
        self.taken = taken

    def __call__(self):
        taken, self.taken = self.taken, ()
        for zone, offset in taken:
            zone.give_back(offset)


def _set_status(request, status: str) -> None:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[STATUS] = status
