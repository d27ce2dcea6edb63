"""nginx's auth_request: the access phase asks a subrequest whether the request may go on.

The subrequest is a GET of the auth_request URI with the original request's headers and no
body, routed like an internal redirect (an ``internal`` location answers it) through the
server's and the location's rewrite phases and the content handler, skipping the access
phase as nginx does for subrequests. Its status decides (ngx_http_auth_request_handler): 2xx
lets the request go on, 401 and 403 are answered as they are (a 401 with the upstream's
WWW-Authenticate), anything else is a 500. ``auth_request_set`` variables are evaluated on
the subrequest (``$upstream_http_*`` are its upstream's response fields) once it is done,
whatever its status. The decision is taken on the response head: a proxied subrequest's
upstream connection is closed then, as nginx's header-only subrequests do.
"""

from __future__ import annotations

from gateway.http import captures, errorpages, response_heads
from gateway.http.held_body import BodyHolder
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log

# In the subrequest's request.vars: its upstream's response fields, lowercase name -> value.
UPSTREAM_FIELDS = response_heads.AUTH_FIELDS


class AuthRequest:
    """One level's auth_request URI and its auth_request_set (name, template) pairs."""

    __slots__ = ("uri", "sets")

    def __init__(self, settings):
        self.uri = settings.auth_request
        self.sets = [(name, compile_template(value)) for name, value in settings.auth_request_set]


def subrequest_plan(server, sub):
    """The plan a subrequest of ``server`` runs: its location's, found as for a request."""
    from gateway.http.server import BEFORE_LOCATIONS
    if server.plan.kind in BEFORE_LOCATIONS:
        return server.plan
    captures.before_search(sub)
    location = server.router.match(sub.uri)
    sub.location = location
    captures.location_found(sub)
    return location.plan if location is not None else server.plan


def subrequest(request, uri: str, method: str = "GET", args: str = ""):
    """nginx's ngx_http_subrequest: a GET of ``uri`` sharing the request's headers (a
    mirror's keeps the request's method and arguments)."""
    sub = type(request)(method, request.request_uri, uri, args, request.version, request.headers)
    for name in ("host", "scheme", "ssl_object", "remote_addr", "remote_port", "server_addr",
                 "server_port", "server", "server_name", "start_time", "connection_id",
                 "connection_requests"):
        setattr(sub, name, getattr(request, name))
    for name in ("realip_addr", "realip_port", "proxy_protocol"):
        value = getattr(request, name, None)
        if value is not None:
            setattr(sub, name, value)
    # An internal request whose proxied URI is its own ($request_uri stays the client's).
    sub.rewritten = "last"
    errorpages.mark_internal(sub)
    return sub


class SubrequestConnection:
    """Stands in for the client connection of a subrequest: it keeps the answer's status and
    head (nothing is sent) and reports once, on the next loop turn."""

    subrequest = True

    def __init__(self, app, request, report):
        self.app = app
        self.request = request
        self.report = report          # report(status, fields or None)
        self.handler = None
        self.keep_alive = True
        self.requests_served = 0
        self.body = None
        self.transport = None
        self.response_started = False
        self.closing_after_response = False
        self.status = 0
        self.fields = None            # the upstream's response fields, for a proxied answer
        self.done = False

    def body_pending(self) -> bool:
        return False

    def set_body_limit(self, limit, timeout):
        pass

    def send_head(self, status, header_lines, add_headers=None, body=b"", own=None):
        self.response_started = True
        handler = self.handler
        if getattr(handler, "proxy", None) is not None:     # a proxied answer: upstream fields
            fields = {}
            for line in header_lines.split(b"\r\n"):
                name, colon, value = line.partition(b":")
                if colon:
                    fields.setdefault(name.strip().lower().decode("latin-1"),
                                      value.strip().decode("latin-1"))
            self.fields = fields
            handler._record()         # $upstream_status and the rest, for auth_request_set
        self._answered(status)

    def send_simple(self, status, body=b"", content_type=b"text/html", extra=b"",
                    add_headers=None, empty_type=False):
        self.response_started = True
        self._answered(status)
        self.finish_response()

    def send_error(self, status, add_headers=None):
        self.send_simple(status)

    def send_body(self, data):
        pass

    def send_raw(self, data):
        pass

    def finish_response(self):
        self.handler = None
        if not self.status:
            self._answered(500)

    def close(self):
        if not self.status:
            self._answered(502)

    def _answered(self, status):
        if self.status:
            return
        self.status = self.request.status = status
        self.app.loop.call_soon(self._report)

    def _report(self):
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.cancel()          # nginx's header-only subrequest ends at the head
        if not self.done:
            self.done = True
            self.report(self.status, self.fields)

    def stop(self):
        """The main request is gone: end the subrequest without a report."""
        self.done = True
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.cancel()

    def check_deadline(self, now):
        if self.handler is not None:
            self.handler.check_deadline(now)


def start(app, conn, request, plan, pieces, decide):
    """Run the subrequest for ``plan.auth_request``; the main connection waits (AuthWait).

    ``decide(status, challenge, pieces)`` is called with the subrequest's verdict: 0 to go on,
    else the status to answer with and its WWW-Authenticate value or None.
    """
    auth = plan.auth_request
    sub = subrequest(request, auth.uri)
    wait = AuthWait(conn, request, pieces)

    def report(status, fields):
        if wait.done:
            return
        pieces = wait.release()
        values = sub.vars if getattr(sub, "vars", None) is not None else {}
        if fields is not None:
            values[UPSTREAM_FIELDS] = fields
            sub.vars = values
        if auth.sets:
            from gateway.http.rewrite import _set
            for name, template in auth.sets:
                _set(request, name, template.render(sub))
        if 200 <= status < 300:
            verdict = 0
        elif status == 403:
            verdict = 403, None
        elif status == 401:
            verdict = 401, (fields or {}).get("www-authenticate")
        else:
            from gateway.http.rewrite import client_context
            log.error(f"*{request.connection_id} auth request unexpected status: {status}"
                      f"{client_context(request)}")
            verdict = 500, None
        decide(verdict, pieces)

    fake = SubrequestConnection(app, sub, report)
    wait.sub = fake
    try:
        app._answer_reached(fake, sub, subrequest_plan(request.server, sub), 0)
    except Exception as exc:   # a bug must cost one request, not the worker
        log.alert(f"unexpected {type(exc).__name__}: {exc} in auth request \"{auth.uri}\"")
        fake._answered(500)


class AuthWait(BodyHolder):
    """The main connection's handler while its auth subrequest runs: keeps the body coming
    in (held_body.py) and forwards timeouts to the subrequest."""

    __slots__ = ("sub",)

    def __init__(self, conn, request, pieces):
        self.hold(conn, request, pieces or ())
        self.sub = None

    def cancel(self):
        if not self.done:
            self.done = True
            if self.sub is not None:
                self.sub.stop()

    def check_deadline(self, now):
        if not self.done and self.sub is not None:
            self.sub.check_deadline(now)
