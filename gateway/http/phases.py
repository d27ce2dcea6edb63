"""nginx's preaccess and access phases, for locations that configure any of them.

Order as nginx runs its phase handlers: limit_req, then limit_conn (preaccess), then allow/deny,
then auth_basic, then auth_request (access), with `satisfy all` (every check passes) or `any`
(one is enough). auth_request waits for its subrequest (gateway/http/auth_request.py). A
location with none of them keeps its plain plan: the compiled proxy path never sees this module.
A `return` answers in the rewrite phase, before all of this, as in nginx.
"""

from __future__ import annotations

from gateway.http import access, errorpages
from gateway.http.access import AccessRules
from gateway.http.auth_basic import AuthBasic
from gateway.http.held_body import BodyHolder
from gateway.http.plan import WrappingPlan
from gateway.http.responses import error_page, padded
from gateway.http.rewrite import client_context
from gateway.observe.errorlog import log


class AccessPhasePlan(WrappingPlan):
    """A plan whose preaccess and access checks run before its content (``content``)."""

    __slots__ = ("real_ip", "post_read_real_ip", "limit_req", "limit_conn", "access",
                 "auth_basic", "satisfy_any", "checks_access", "auth_request")

    def __init__(self, content, settings):
        super().__init__("phases", content, settings)
        self.real_ip = content.real_ip
        self.post_read_real_ip = content.post_read_real_ip
        # The limits' modules are imported by the configs that use them (their zones map shared memory).
        self.limit_req = self.limit_conn = None
        if settings.limit_reqs:
            from gateway.http.limit_req import LimitReqs
            self.limit_req = LimitReqs(settings)
        if settings.limit_conns:
            from gateway.http.limit_conn import LimitConns
            self.limit_conn = LimitConns(settings)
        self.access = AccessRules(settings.access_rules) if settings.access_rules else None
        self.auth_basic = AuthBasic(settings) \
            if settings.auth_basic is not None and settings.auth_basic_user_file else None
        self.auth_request = None
        if settings.auth_request is not None:
            from gateway.http.auth_request import AuthRequest   # only configs using it load it
            self.auth_request = AuthRequest(settings)
        self.satisfy_any = settings.satisfy == "any"
        self.checks_access = self.access is not None or self.auth_basic is not None \
            or self.auth_request is not None


def wrap(plan, settings):
    """``plan`` behind the checks its settings ask for; ``plan`` itself when there are none."""
    if plan.kind == "return" or not (
            settings.limit_reqs or settings.limit_conns or settings.access_rules
            or (settings.auth_basic is not None and settings.auth_basic_user_file)
            or settings.auth_request is not None):
        return plan
    return AccessPhasePlan(plan, settings)


def run(app, conn, request, plan, redirects):
    """Run the checks; answer with their verdict, or go on to the content (maybe later)."""
    if plan.limit_req is not None:
        status, delay = plan.limit_req.check(request)
        if status:
            _refuse(app, conn, plan, status)
            return
        if delay:
            Delayed(app, conn, request, plan, redirects, delay)
            return
    _after_limit_req(app, conn, request, plan, redirects, None)


def _after_limit_req(app, conn, request, plan, redirects, pieces):
    if plan.limit_conn is not None:
        status = plan.limit_conn.check(request)
        if status:
            _refuse(app, conn, plan, status)
            return
    if plan.checks_access:
        verdict, code, challenge = _access(request, plan)
        if verdict is None and plan.auth_request is not None:
            from gateway.http import auth_request

            def decide(found, pieces):
                _after_auth_request(app, conn, request, plan, redirects, pieces, code,
                                    challenge, found)
            auth_request.start(app, conn, request, plan, pieces, decide)
            return
        if verdict is None:
            verdict = _post_access(request, code, challenge)
        if verdict:
            _refuse(app, conn, plan, *verdict)
            return
    if pieces is None:
        app._answer_content(conn, request, plan.content, redirects)
    else:
        content_after_hold(app, conn, request, plan.content, redirects, pieces)


def _after_auth_request(app, conn, request, plan, redirects, pieces, code, challenge, found):
    """Go on once auth_request's subrequest answered: ``found`` is 0 or (status, challenge)."""
    if found and plan.satisfy_any and found[0] in (401, 403):
        if found[1] is not None:
            # nginx has pushed every challenge met so far: a second 401 adds its own.
            challenge = found[1] if challenge is None else (*_values(challenge), found[1])
        if code != 401:
            code = found[0]
        found = _post_access(request, code, challenge)
    if found:
        _refuse(app, conn, plan, *found)
        return
    try:
        content_after_hold(app, conn, request, plan.content, redirects, pieces)
    except Exception as exc:   # a bug must cost one request, not the worker
        log.alert(f"unexpected {type(exc).__name__}: {exc} after an auth request")
        if not conn.response_started:
            conn.send_error(500)


def _access(request, plan):
    """nginx's access phase up to auth_request: (0 to go on at once, (status, WWW-Authenticate
    value or None) to refuse, or None when undecided; with `satisfy any`, the code and
    challenge gathered so far)."""
    code, challenge = 0, None
    for check in (_access_rules, _auth_basic):
        verdict = check(request, plan)
        if verdict is None:
            continue                       # declined
        if verdict == 0:
            if plan.satisfy_any:
                return 0, 0, None          # one check is enough; its challenge is dropped
            continue
        status, extra = verdict
        if plan.satisfy_any and status in (401, 403):
            if code != 401:
                code, challenge = status, extra
            continue
        return verdict, 0, None
    return None, code, challenge


def _post_access(request, code, challenge):
    """nginx's post-access phase: the code `satisfy any` gathered, if no check passed."""
    if code == 403:
        log.error(f"*{request.connection_id} access forbidden by rule{client_context(request)}")
    return (code, challenge) if code else 0


def _access_rules(request, plan):
    if plan.access is None:
        return None
    found = plan.access.check(request)
    if found is access.DECLINED:
        return None
    if found == access.ALLOW:
        return 0
    if not plan.satisfy_any:
        log.error(f"*{request.connection_id} access forbidden by rule{client_context(request)}")
    return 403, None


def _auth_basic(request, plan):
    return plan.auth_basic.check(request, client_context) if plan.auth_basic is not None else None


def _values(challenge):
    return (challenge,) if isinstance(challenge, str) else challenge


def _refuse(app, conn, plan, status, challenge=None):
    """Answer ``status``; ``challenge``: a WWW-Authenticate value, or a tuple of them."""
    if challenge is None:
        conn.send_error(status, plan.add_headers)
        return
    lines = []
    for value in _values(challenge):
        errorpages.keep_header(conn.request, "WWW-Authenticate", value)
        lines.append(b"WWW-Authenticate: %s\r\n" % value.encode("latin-1", "replace"))
    if not (app.error_pages_in_use and app.answer_error_page(conn, status)):
        conn.send_simple(status, padded(conn.request, status, error_page(status)),
                         b"text/html", b"".join(lines),
                         plan.add_headers)


def content_after_hold(app, conn, request, content, redirects, pieces):
    """The content handler of a request that waited (a delay, a subrequest, the resolver):
    the body read meanwhile goes to it."""
    if content.kind == "proxy":
        plan = app.proxy_plan(request, content)
        if conn.body_pending() and request.version == 11 and \
                (request.header("expect") or "").lower() == "100-continue":
            conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        exchange = conn.proxy_exchange(request, plan)
        if pieces:
            exchange.client_body(pieces)
        exchange.start()
        return
    app._answer_content(conn, request, content, redirects)
    handler = conn.handler
    if handler is not None and pieces:
        handler.client_body(pieces)


class Delayed(BodyHolder):
    """The connection's handler while a request waits out its limit_req delay."""

    __slots__ = ("app", "plan", "redirects", "timer")

    def __init__(self, app, conn, request, plan, redirects, delay_ms):
        self.app = app
        self.plan = plan
        self.redirects = redirects
        self.hold(conn, request)
        self.timer = app.loop.call_later(delay_ms / 1000, self._wake)

    def _wake(self):
        if self.done:
            return
        conn = self.conn
        pieces = self.release()
        try:
            _after_limit_req(self.app, conn, self.request, self.plan, self.redirects, pieces)
        except Exception as exc:   # a bug must cost one request, not the worker
            log.alert(f"unexpected {type(exc).__name__}: {exc} after a limit_req delay")
            if not conn.response_started:
                conn.send_error(500)

    def cancel(self):
        if not self.done:
            self.done = True
            self.timer.cancel()
