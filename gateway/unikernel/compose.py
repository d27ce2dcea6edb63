"""One request's parts worked on by several unikernel pools at once, then its content handler.

When a request reaches a location with `unikernel_auth`, `unikernel_cache` or `unikernel_body`, the
credential goes to the auth pool and the cache key to the kv pool in the same event-loop turn; the
body, once in, goes to the body pool. The request goes on only when every gate has passed: the
upstream never sees a request whose credential or signature failed, nor its body. A cache hit is
answered from the guest once the credential is good; a miss is proxied, and the response stored when
a shared cache may store it (gateway/unikernel/cache.py). Each part has a deadline and a `fail=`
choice, so a dead or hung pool costs a 503 or a bypass, never a hanging client.
"""

from __future__ import annotations

import orjson

from gateway.http import parser
from gateway.http.proxy import PENDING_LIMIT, ProxyExchange
from gateway.http.responses import error_page, padded
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log
from gateway.unikernel import cache
from gateway.unikernel.pool import Call
from gateway.unikernel.wire import MAX_PAYLOAD, Op, Status

AUTH, CACHE, BODY = 0, 1, 2
_NAMES = ("unikernel_auth", "unikernel_cache", "unikernel_body")
# How long a miss waits for another request's fetch of the same key (nginx's proxy_cache_lock_timeout).
FILL_WAIT = 5.0
_BEARER_CHALLENGE = b'WWW-Authenticate: Bearer\r\n'
_INVALID_TOKEN = b'WWW-Authenticate: Bearer error="invalid_token"\r\n'
_AUTH_REFUSED = frozenset({Status.UNAUTHORIZED, Status.EXPIRED, Status.NOT_YET_VALID, Status.BAD_REQUEST})
# What the body pool's verdicts mean to the client.
_BODY_STATUS = {Status.UNAUTHORIZED: 401, Status.BAD_REQUEST: 400, Status.TOO_LARGE: 413,
                Status.NO_KEY: 503}


class _View:
    """The location's plan as one cache outcome sees it: its add_headers carry X-Cache."""

    # Every attribute the proxy exchange reads of a plan (the pure-Python connection reads gzip too).
    __slots__ = ("location", "settings", "kind", "proxy", "add_headers", "access_logs", "records_upstream",
                 "unikernel", "gzip")

    def __init__(self, plan, x_cache):
        for name in self.__slots__:
            setattr(self, name, getattr(plan, name))
        if x_cache:
            self.add_headers = list(plan.add_headers) + [(b"X-Cache", compile_template(x_cache), True)]


class ComposePlan:
    """A location's parts, compiled at config load."""

    __slots__ = ("auth", "cache", "body", "token", "claims", "key", "signature", "views", "filling",
                 "content")

    def __init__(self, plan, settings):
        self.content = plan.kind
        self.auth = settings.unikernel_auth
        # The cache stores what a proxied location answers; for other content it stays out of the way.
        self.cache = settings.unikernel_cache if plan.kind == "proxy" else None
        self.body = settings.unikernel_body
        self.token = compile_template(self.auth.token) if self.auth else None
        self.claims = [(n.lower().encode("latin-1"), n.encode("latin-1"), c)
                       for n, c in self.auth.claim_headers] if self.auth else []
        self.key = compile_template(self.cache.key) if self.cache else None
        self.signature = compile_template(self.body.signature) if self.body else None
        self.views = {status: _View(plan, status if self.cache else None) for status in ("HIT", "MISS", "BYPASS")}
        self.filling = {}     # cache key -> the Fill fetching it from the upstream


class _PartCall:
    """The owner of one part's Call: forwards the pool's answer to the composition."""

    __slots__ = ("composition", "part")

    def __init__(self, composition, part):
        self.composition = composition
        self.part = part

    def unikernel_reply(self, status, payload):
        self.composition.part_reply(self.part, status, payload)

    def unikernel_failed(self, status, why):
        self.composition.part_failed(self.part, why)


class Composition:
    """The client connection's handler while the parts of one request are out."""

    __slots__ = ("conn", "request", "plan", "cplan", "app", "pools", "calls", "deadlines", "waiting",
                 "claims", "hit", "cache_key", "cache_status", "body", "body_size", "body_done",
                 "paused", "done", "continue_sent", "awaited", "awaited_until")

    def __init__(self, conn, request, plan, app):
        self.conn = conn
        self.request = request
        self.plan = plan
        self.cplan = plan.compose
        self.app = app
        self.pools = app.unikernels.pools
        self.calls = [None, None, None]
        self.deadlines = [0.0, 0.0, 0.0]
        self.waiting = 0           # parts not answered yet
        self.claims = None
        self.hit = None
        self.cache_key = None
        self.cache_status = None
        self.body = []
        self.body_size = 0
        self.body_done = not conn.body_pending()
        self.paused = False
        self.done = False
        self.continue_sent = False
        self.awaited = None          # the Fill this request waits for, and until when
        self.awaited_until = 0.0

    def start(self):
        cplan = self.cplan
        request = self.request
        if cplan.auth is not None:
            token = cplan.token.render(request)
            scheme, _, rest = token.partition(" ")
            if rest and scheme.lower() == "bearer":
                token = rest.strip()
            if not token:
                self._answer(401, _BEARER_CHALLENGE)
                return
            self._submit(AUTH, cplan.auth, Op.AUTH_VERIFY, token.encode("latin-1", "replace"), None, True)
        if cplan.cache is not None:
            if request.method in cplan.cache.methods:
                key = cplan.key.render(request).encode("utf-8", "surrogateescape")
                self.cache_key = key
                self._submit(CACHE, cplan.cache, Op.KV_GET, key, key, True)
            else:
                self._set_cache_status("BYPASS")
        if cplan.body is not None:
            self.waiting += 1      # answered once the body is in
            if self.body_done:
                self._submit_body()
        if self.waiting == 0 and not self.done:
            self._proceed()
        elif not self.done:
            self._maybe_continue()

    # Parts ---------------------------------------------------------------------

    def _submit(self, part, config, op, payload, key, idempotent, counted=True):
        pool = self.pools[config.pool]
        call = Call(op, payload, key, idempotent, _PartCall(self, part))
        self.calls[part] = call
        self.deadlines[part] = self.app.clock() + config.timeout
        if counted:
            self.waiting += 1
        pool.submit(call)

    def _submit_body(self):
        cplan = self.cplan
        signature = cplan.signature.render(self.request).encode("latin-1", "replace")
        if not signature:
            self._answer(401)
            return
        body = b"".join(self.body)
        if len(signature) > 0xFFFF or 2 + len(signature) + len(body) > MAX_PAYLOAD:
            self._answer(413)
            return
        payload = len(signature).to_bytes(2, "little") + signature + body
        self._submit(BODY, cplan.body, Op.WEBHOOK_VERIFY, payload, None, True, counted=False)

    def part_reply(self, part, status, payload):
        if self.done or self.calls[part] is None:
            return
        self.calls[part] = None
        if part == AUTH:
            if status == Status.OK:
                self.claims = payload
            elif status in _AUTH_REFUSED:
                self._answer(401, _INVALID_TOKEN)
                return
            else:
                # An answer, but not a verdict (no key, unknown op): never a reason to fail open.
                self._log(f'unikernel_auth "{self.cplan.auth.pool}" answered status {status}')
                self._answer(503)
                return
        elif part == CACHE:
            entry = cache.decode(payload) if status == Status.OK else None
            if entry is not None and entry.matches(self.request):
                self.hit = entry
                self._set_cache_status("HIT")
            elif status in (Status.OK, Status.NOT_FOUND):
                self._set_cache_status("MISS")
            else:
                self.cache_key = None       # e.g. a key kv refuses: neither looked up nor stored
                self._set_cache_status("BYPASS")
        elif status != Status.OK:
            code = _BODY_STATUS.get(status)
            if code is None:
                self._log(f'unikernel_body "{self.cplan.body.pool}" answered status {status}')
                code = 503
            self._answer(code)
            return
        self._part_done()

    def part_failed(self, part, why):
        if self.done or self.calls[part] is None:
            return
        self.calls[part] = None
        self._part_down(part, why)

    def _part_down(self, part, why):
        """A part's pool could not answer: fail closed, or go on without it, as configured."""
        config = (self.cplan.auth, self.cplan.cache, self.cplan.body)[part]
        self._log(f'{_NAMES[part]} "{config.pool}": {why}')
        if config.fail == "closed":
            self._answer(503)
            return
        if part == CACHE:
            self.cache_key = None          # nothing is looked up or stored for this request
            self._set_cache_status("BYPASS")
        self._part_done()

    def _part_done(self):
        self.waiting -= 1
        if self.waiting == 0:
            self._proceed()
        else:
            self._maybe_continue()

    def _maybe_continue(self):
        """Ask for the body once the credential is good: a refused upload is never sent."""
        if self.continue_sent or self.calls[AUTH] is not None or self.body_done:
            return
        request = self.request
        if request.version == 11 and (request.header("expect") or "").lower() == "100-continue":
            self.continue_sent = True
            self.conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _set_cache_status(self, status):
        self.cache_status = status
        self.request.cache_status = status

    # Going on -------------------------------------------------------------------

    def _proceed(self):
        """Every gate passed: answer from the cache, wait for a fill in progress, or go upstream."""
        cplan = self.cplan
        if self.hit is not None:
            self._serve(self.hit)
            return
        key = self.cache_key
        if key is not None and self.cache_status == "MISS":
            fill = cplan.filling.get(key)
            if fill is not None:
                fill.waiters.append(self)
                self.awaited = fill
                self.awaited_until = self.app.clock() + FILL_WAIT
                return
            self._start_content(cache.Fill(key, cplan.filling, cplan.cache.max_size))
            return
        self._start_content(None)

    def fill_done(self, entry):
        """The fill this request waited for ended: its entry, or None to go upstream ourselves."""
        self.awaited = None
        if self.done:
            return
        if entry is not None and entry.matches(self.request):
            self._set_cache_status("HIT")
            self._serve(entry)
        else:
            self._start_content(None)

    def _serve(self, entry):
        self.done = True
        head = entry.head + b"Age: %d\r\n" % entry.age()
        body = entry.body if self.request.method != "HEAD" else b""
        conn = self.conn
        conn.handler = None
        conn.send_head(entry.status, head, self.cplan.views["HIT"].add_headers, body)
        conn.finish_response()

    def _start_content(self, fill):
        self.done = True
        conn = self.conn
        plan = self.cplan.views[self.cache_status] if self.cache_status else self.plan
        body, self.body = self.body, []
        kind = self.cplan.content
        if self.cplan.claims:
            self._set_claim_headers()
        if kind == "proxy":
            if fill is None:
                handler = conn.proxy_exchange(self.request, plan)    # the compiled one when built
            else:
                handler = ComposedProxy(conn, self.request, plan, self.app, fill, self.cplan.cache)
            self._maybe_continue()
        elif kind == "unikernel":
            handler = self.app.make_unikernel_handler(conn, self.request, plan, self.app)
        else:
            conn.handler = None
            self._resume()
            self.app.run_content(conn, self.request, self.plan, kind)
            return
        conn.handler = handler
        if body:
            handler.client_body(body)
        self._resume()
        handler.start()

    def _set_claim_headers(self):
        """The verified claims as request headers; a client's own copies of them never go on."""
        request = self.request
        names = {lower for lower, _, _ in self.cplan.claims}
        headers = [h for h in request.headers if h[0] not in names]
        claims = None
        if self.claims:
            try:
                claims = orjson.loads(self.claims)
            except orjson.JSONDecodeError:
                pass
        if isinstance(claims, dict):
            for lower, name, claim in self.cplan.claims:
                value = claims.get(claim)
                if value is None:
                    continue
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
                # A claim is data, never a way to add fields: control characters drop it.
                if text.isprintable():
                    headers.append((lower, name, text.encode("utf-8")))
        request.headers = headers

    def _answer(self, status, extra=b""):
        """Answer with an error now; the parts still out are called back."""
        if self.done:
            return
        self.done = True
        self._cancel_calls()
        self._resume()
        conn = self.conn
        if extra:
            conn.send_simple(status, padded(conn.request, status, error_page(status)),
                             b"text/html", extra, self.plan.add_headers)
        else:
            conn.send_error(status, self.plan.add_headers)

    def _cancel_calls(self):
        for part, call in enumerate(self.calls):
            if call is not None:
                self.calls[part] = None
                self.pools[(self.cplan.auth, self.cplan.cache, self.cplan.body)[part].pool].cancel(call)

    def _resume(self):
        if self.paused:
            self.paused = False
            if self.conn.transport is not None:
                self.conn.transport.resume_reading()

    # Events from the client --------------------------------------------------

    def client_body(self, pieces):
        if self.done:
            return
        for piece in pieces:
            self.body_size += len(piece)
            self.body.append(piece)
        if self.cplan.body is not None:
            if self.body_size > MAX_PAYLOAD:
                self._answer(413)
        elif self.body_size > PENDING_LIMIT and not self.paused and self.conn.transport is not None:
            self.paused = True          # held until the gates pass
            self.conn.transport.pause_reading()

    def client_body_end(self):
        self.body_done = True
        if not self.done and self.cplan.body is not None and self.calls[BODY] is None:
            self._submit_body()

    def client_aborted(self):
        if self.done:
            return
        self.request.status = self.request.status or 499
        self.cancel()
        self.conn.finish_response()

    def cancel(self):
        if not self.done:
            self.done = True
            self._cancel_calls()
            if self.awaited is not None:
                self.awaited.waiters.remove(self)
                self.awaited = None

    def client_write_paused(self):
        pass

    def client_write_resumed(self):
        pass

    def check_deadline(self, now):
        if self.done:
            return
        if self.awaited is not None and now >= self.awaited_until:
            # The fetch for this key is slow: go upstream too rather than wait on (proxy_cache_lock_timeout).
            self.awaited.waiters.remove(self)
            self.awaited = None
            self._start_content(None)
            return
        for part, call in enumerate(self.calls):
            if call is not None and now >= self.deadlines[part]:
                self.calls[part] = None
                config = (self.cplan.auth, self.cplan.cache, self.cplan.body)[part]
                self.pools[config.pool].cancel(call)
                self._part_down(part, f"timed out after {config.timeout:g}s")
                if self.done:
                    return

    def _log(self, detail):
        request = self.request
        log.error(f'*{request.connection_id} {detail}, client: {request.remote_addr}, '
                  f'server: {request.server_name}, '
                  f'request: "{request.method} {request.request_uri} {request.protocol}"')


class ComposedProxy(ProxyExchange):
    """ProxyExchange whose response is kept for the cache (a miss that may fill it)."""

    __slots__ = ("fill", "fill_part")

    def __init__(self, conn, request, plan, app, fill, cache_part):
        self.fill = fill
        self.fill_part = cache_part
        super().__init__(conn, request, plan, app)

    def _start_response(self, version, status, headers, rest):
        fill = self.fill
        if fill is not None:
            framing, length = parser.response_body_framing(status, headers, self.request.method)
            fill.begin(status, headers, self.request, framing, length, self.fill_part.ttl)
            if framing == "length" and 0 < length <= len(rest):
                fill.add(rest[:length])     # answered in one write, without _relay
        super()._start_response(version, status, headers, rest)

    def _relay(self, data):
        if self.fill is not None and self.framing == "length":
            self.fill.add(data[:self.remaining])
        super()._relay(data)

    def _complete(self):
        super()._complete()
        fill, self.fill = self.fill, None
        if fill is not None:
            stored = fill.finish()
            if stored is not None:
                _store(self.app, self.fill_part, fill.key, *stored)

    def _give_up(self, status, detail):
        self._drop_fill()
        super()._give_up(status, detail)

    def _abort(self, detail):
        self._drop_fill()
        super()._abort(detail)

    def cancel(self):
        self._drop_fill()
        super().cancel()

    def _drop_fill(self):
        fill, self.fill = self.fill, None
        if fill is not None:
            fill.abandon()


class _Store:
    """The owner of a KV_PUT that fills the cache: nobody waits for it, failures are only logged."""

    __slots__ = ("pool", "call", "timer")

    def unikernel_reply(self, status, payload):
        self._end()
        if status != Status.OK:
            log.info(f'unikernel_cache "{self.pool.name}": storing answered status {status}')

    def unikernel_failed(self, status, why):
        self._end()
        log.info(f'unikernel_cache "{self.pool.name}": storing failed: {why}')

    def _end(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self):
        self.timer = None
        self.pool.cancel(self.call)


def _store(app, part, key, value, ttl):
    """Put one entry into the kv pool, with the kv guest's own expiry."""
    pool = app.unikernels.pools[part.pool]
    put = min(int(ttl), 0xFFFFFFFF).to_bytes(4, "little") + len(key).to_bytes(2, "little") + key + value
    if len(key) > 1024 or len(put) > MAX_PAYLOAD:
        return
    owner = _Store()
    owner.pool = pool
    owner.call = Call(Op.KV_PUT, put, key, False, owner)
    owner.timer = app.loop.call_later(part.timeout * 4, owner.expire)
    pool.submit(owner.call)
