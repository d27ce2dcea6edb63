"""nginx's limit_req at request time: the leaky bucket of ngx_http_limit_req_module.

Every zone keeps, per key, the excess in milli-requests and when it was last drained (the table
lives in shared memory, gateway/http/zones.py). A request drains the bucket by rate x elapsed
time and adds 1000; over `burst` it is rejected, above `delay` it waits (excess - delay) / rate.
With several limit_req at one level every one but the last only holds its entry until the last
has decided, then all are accounted and the longest delay wins, as in nginx. A request is
limited once: an internal redirect does not count it again ($limit_req_status is kept).
"""

from __future__ import annotations

from gateway.http import zones
from gateway.http.rewrite import client_context
from gateway.http.variables import binary_address, compile_template
from gateway.observe.errorlog import log

PASSED, DELAYED, REJECTED = "PASSED", "DELAYED", "REJECTED"     # dry run: "_DRY_RUN" added
STATUS = " limit_req"     # in request.vars, read by $limit_req_status (gateway/http/variables.py)
MAX_KEY = 65535
# The level of "delaying request" lines: one less severe than limit_req_log_level's.
_DELAY_LEVEL = {"info": "info", "notice": "info", "warn": "notice", "error": "warn"}


def _set_status(request, status: str) -> None:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[STATUS] = status


_binary_keys: dict = {}      # remote address -> its bytes, for the usual $binary_remote_addr key


def _binary_remote_addr(request) -> bytes:
    address = request.remote_addr
    key = _binary_keys.get(address)
    if key is None:
        if len(_binary_keys) >= 4096:
            _binary_keys.clear()
        key = _binary_keys[address] = binary_address(address).encode("latin-1")
    return key


def key_function(text: str):
    """request -> a zone's key as bytes."""
    if text == "$binary_remote_addr":
        return _binary_remote_addr
    template = compile_template(text)
    return lambda request: template.render(request).encode("utf-8", "surrogateescape")


class _Limit:
    __slots__ = ("zone", "key", "burst", "delay")

    def __init__(self, limit):
        self.zone = limit.zone
        self.key = key_function(limit.zone.key)
        self.burst = limit.burst
        self.delay = limit.delay


class LimitReqs:
    """One level's limit_req list with its status, log level and dry run."""

    __slots__ = ("limits", "status", "log_level", "delay_level", "dry_run")

    def __init__(self, settings):
        self.limits = [_Limit(limit) for limit in settings.limit_reqs]
        self.status = settings.limit_req_status
        self.log_level = settings.limit_req_log_level
        self.delay_level = _DELAY_LEVEL[self.log_level]
        self.dry_run = settings.limit_req_dry_run

    def check(self, request) -> tuple[int, int]:
        """(status to answer with or 0, milliseconds to wait before going on)."""
        values = getattr(request, "vars", None)
        if values and STATUS in values:
            return 0, 0
        now = zones.now_ms()
        held = []
        rc, excess, limit = None, 0, None
        last = len(self.limits) - 1
        for index, limit in enumerate(self.limits):
            key = limit.key(request)
            if not key:
                continue
            if len(key) > MAX_KEY:
                log.error(f'*{request.connection_id} '
                          f'the value of the "{limit.zone.key}" key is more than {MAX_KEY} bytes: '
                          f'"{key.decode("latin-1")}"{client_context(request)}')
                continue
            rc, excess, offset = limit.zone.lookup(key, limit.burst, index == last, now)
            if rc != zones.AGAIN:
                break
            held.append((limit, offset))
        if rc is None:
            return 0, 0
        if rc in (zones.BUSY, zones.ERROR):
            for other, offset in held:
                other.zone.unhold(offset)
            message = f'limiting requests{self._dry()}, excess: {_milli(excess)} by zone ' \
                f'"{limit.zone.name}"' if rc == zones.BUSY else None
            return self._verdict(request, self.log_level, message, REJECTED, (self.status, 0))
        if rc == zones.AGAIN:
            excess = 0
        delay = 0 if excess <= limit.delay else (excess - limit.delay) * 1000 // limit.zone.rate
        for other, offset in reversed(held):
            other_excess = other.zone.account(offset, now)
            if other_excess <= other.delay:
                continue
            other_delay = (other_excess - other.delay) * 1000 // other.zone.rate
            if other_delay > delay:
                delay, excess, limit = other_delay, other_excess, other
        if not delay:
            _set_status(request, PASSED)
            return 0, 0
        message = f'delaying request{self._dry()}, excess: {_milli(excess)}, by zone "{limit.zone.name}"'
        return self._verdict(request, self.delay_level, message, DELAYED, (0, delay))

    def _dry(self) -> str:
        return ", dry run" if self.dry_run else ""

    def _verdict(self, request, level, message, status, answer):
        """Log a refusal or delay; under dry run only $limit_req_status tells of it."""
        if message is not None and log.enabled(level):
            log.log(level, f"*{request.connection_id} {message}{client_context(request)}")
        if self.dry_run:
            _set_status(request, status + "_DRY_RUN")
            return 0, 0
        _set_status(request, status)
        return answer


def _milli(excess: int) -> str:
    return f"{excess // 1000}.{excess % 1000:03d}"
