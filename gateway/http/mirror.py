"""nginx's mirror module: background subrequests that copy a request to other locations.

In the precontent phase of a location with ``mirror`` URIs, a main request (never a
subrequest: ngx_http_mirror_handler declines them) starts one subrequest per URI with its own
method, arguments and headers, routed like auth_request's (gateway/http/auth_request.py) to a
location that is usually ``internal``, and goes on to its content handler at once: the
mirrors' answers are dropped at their heads (nginx's header_only) and their errors reach
nothing but the error log. With ``mirror_request_body on`` (the default) nginx first reads the
whole body (ngx_http_read_client_request_body), so the main request's content handler starts
only once the body is in, and each mirror is sent the same bytes with a Content-Length.

Where we differ on purpose: nginx keeps the client connection (and so the main request's
access log line and a keep-alive client's next request) until its mirrors end; here the main
request is logged and its connection goes on as without mirrors. And nginx bounds the mirrors
by nothing; here a worker runs at most IN_FLIGHT of them and drops the next ones with a
warning, so a shadow that is slow or down cannot pile them up. They keep their proxy's
timeouts, checked every SWEEP_INTERVAL while any runs.
"""

from __future__ import annotations

from gateway.http.auth_request import SubrequestConnection, subrequest, subrequest_plan
from gateway.http.held_body import BodyHolder
from gateway.http.plan import WrappingPlan
from gateway.observe.errorlog import log

# Mirror subrequests one worker runs at once; more are dropped (logged once a second at most).
IN_FLIGHT = 256
SWEEP_INTERVAL = 0.25


class MirrorPlan(WrappingPlan):
    """A plan whose content handler starts after the location's mirrors (``content``)."""

    __slots__ = ("real_ip", "post_read_real_ip", "uris", "with_body")

    def __init__(self, content, settings):
        super().__init__("mirror", content, settings)
        self.real_ip = getattr(content, "real_ip", None)
        self.post_read_real_ip = getattr(content, "post_read_real_ip", None)
        self.uris = settings.mirrors
        self.with_body = settings.mirror_request_body


def wrap(plan, settings):
    """``plan`` behind its mirrors; ``plan`` itself when there are none (or it is a `return`,
    which answers in the rewrite phase, before nginx's precontent phase)."""
    if not settings.mirrors or plan.kind == "return":
        return plan
    return MirrorPlan(plan, settings)


def run(app, conn, request, plan, redirects):
    """Start the mirrors, then the content handler (once the body is in, with the body)."""
    if getattr(conn, "subrequest", False):
        app._answer_content(conn, request, plan.content, redirects)    # r != r->main
        return
    if plan.with_body and conn.body_pending():
        if request.version == 11 and (request.header("expect") or "").lower() == "100-continue":
            conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")     # as reading the body does
        BodyRead(app, conn, request, plan, redirects)
        return
    start(app, request, plan, () if plan.with_body else None)
    app._answer_content(conn, request, plan.content, redirects)


def start(app, request, plan, pieces):
    """One background subrequest per mirror URI; ``pieces``: the body to send, None for none."""
    mirrors = app.mirrors
    if mirrors is None:
        mirrors = app.mirrors = Mirrors(app)
    for uri in plan.uris:
        mirrors.launch(request, uri, pieces)


class Mirrors:
    """One worker's mirror subrequests in flight."""

    def __init__(self, app):
        self.app = app
        self.running: set[MirrorConnection] = set()
        self.dropped = 0
        self._logged = -1.0
        self._timer = None

    def launch(self, request, uri, pieces):
        app = self.app
        if len(self.running) >= IN_FLIGHT:
            self.dropped += 1
            now = app.clock()
            if now - self._logged >= 1.0:
                self._logged = now
                from gateway.http.rewrite import client_context
                log.warn(f'*{request.connection_id} mirror "{uri}" dropped: {IN_FLIGHT} mirror '
                         f'subrequests in flight{client_context(request)}')
            return
        sub = subrequest(request, uri, request.method, request.args)
        fake = MirrorConnection(app, sub, None, pieces)
        fake.report = lambda status, fields: self.running.discard(fake)
        self.running.add(fake)
        if self._timer is None:
            self._timer = app.loop.call_later(SWEEP_INTERVAL, self._sweep)
        try:
            app._answer_reached(fake, sub, subrequest_plan(request.server, sub), 0)
        except Exception as exc:   # a bug must cost one mirror, not the worker
            log.alert(f'unexpected {type(exc).__name__}: {exc} in mirror "{uri}"')
            fake.stop()
            self.running.discard(fake)

    def _sweep(self):
        self._timer = None
        if not self.running:
            return
        now = self.app.clock()
        for fake in list(self.running):
            fake.check_deadline(now)
        self._timer = self.app.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def stop(self):
        """A fast shutdown: end every mirror now."""
        for fake in list(self.running):
            fake.stop()
        self.running.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _HeldBody:
    """The main request's body as its mirror's connection shows it: read whole, so the
    exchange sends it with a Content-Length as it does a chunked body (proxy.py)."""

    kind = "chunked"
    remaining = 0
    done = True

    def __init__(self, size):
        self.received = size


class MirrorConnection(SubrequestConnection):
    """A mirror's stand-in client connection: the body, if any, goes to the first handler."""

    def __init__(self, app, request, report, pieces):
        self.pieces = pieces or None
        self._handler = None
        super().__init__(app, request, report)
        if pieces:
            self.body = _HeldBody(sum(map(len, pieces)))

    @property
    def handler(self):
        return self._handler

    @handler.setter
    def handler(self, handler):
        self._handler = handler
        if handler is not None and self.pieces is not None:
            pieces, self.pieces = self.pieces, None
            handler.client_body(pieces)


class BodyRead(BodyHolder):
    """The connection's handler while a request's body is read whole before its mirrors."""

    __slots__ = ("app", "plan", "redirects")

    def __init__(self, app, conn, request, plan, redirects):
        self.app = app
        self.plan = plan
        self.redirects = redirects
        self.hold(conn, request)

    def client_body(self, pieces):
        # No pause: nginx reads it all (client_max_body_size bounds it; nginx's overflow goes to
        # a temporary file, ours stays in memory).
        for piece in pieces:
            self.size += len(piece)
            self.pieces.append(piece)

    def client_body_end(self):
        if self.done:
            return
        conn, request = self.conn, self.request
        pieces = self.release()
        from gateway.http.phases import content_after_hold
        try:
            start(self.app, request, self.plan, pieces)
            content_after_hold(self.app, conn, request, self.plan.content, self.redirects, pieces)
        except Exception as exc:   # a bug must cost one request, not the worker
            log.alert(f"unexpected {type(exc).__name__}: {exc} after reading a mirrored body")
            if not conn.response_started:
                conn.send_error(500)

    def cancel(self):
        self.done = True
