"""The rewrite module at request time: scripts of rewrite, return, set, if and break.

Program is the specification of _fastpath/rewrite.pyx, which runs the scripts when it is
built (see compiled()).  A location script that ends in its own proxy content is answered
by the compiled connection (_fastpath/proxyproto.pyx ``_answer_script``); every other end
goes to WorkerApp.answer_script_end.  Plain locations carry no trace of this module.
"""

from __future__ import annotations

import copy
import dataclasses
import os

from gateway._select import load_fast
from gateway.config import rewrite as conf
from gateway.http import limit_rate
from gateway.http.captures import script_mismatch, set_captures
from gateway.http.plan import ProxyPlan, WrappingPlan, escape_uri
from gateway.http.variables import compile_template
from gateway.observe.errorlog import log

# How a script ended.
FELL_THROUGH = 0    # the end of a script: FIND if a rewrite changed the URI, else DONE
DONE = 1            # "break" (directive or flag): answer with this location's content
FIND = 2            # "rewrite ... last": search the locations again with the new URI
ANSWER = 3          # "return": answer with the plan given
REDIRECT = 4        # "rewrite ... redirect|permanent" or a URL replacement


class RewritePlan(WrappingPlan):
    """A location (or server) plan whose script runs before its content is chosen."""

    __slots__ = ("program",)

    def __init__(self, content, program: Program):
        super().__init__("rewrite", content, content.settings)
        self.program = program


class RewrittenProxyPlan(ProxyPlan):
    """A proxy plan for requests a rewrite (or error_page) may have changed.

    nginx sends the rewritten ``$uri`` (escaped) and ``$args`` once a rewrite changed them.
    A location found again after "last" replaces its prefix by the proxy_pass URI part as
    usual; after "break" the URI part is dropped and the whole rewritten URI is sent
    (ngx_http_proxy_create_request with valid_location unset).
    """

    __slots__ = ("passed_uri",)

    def __init__(self, location, settings, upstream, expires=None):
        super().__init__(location, settings, upstream, expires)
        self.passed_uri = self.uri_replacement
        # Not None, so that the compiled exchange always asks upstream_uri() below.
        self.uri_replacement = ""

    def upstream_uri(self, request) -> str:
        rewritten = getattr(request, "rewritten", None)
        passed = self.passed_uri
        if not rewritten:
            if passed is None:
                return request.request_uri
            # ProxyPlan.upstream_uri with the URI part kept in passed_uri.
            tail = request.uri[self.prefix_length:]
            if "%" in request.request_uri.partition("?")[0]:
                tail = escape_uri(tail)
        elif rewritten != "break" and passed is not None:
            # Found again by its location: the prefix is replaced as for any request.
            tail = escape_uri(request.uri[self.prefix_length:])
        else:
            # After "break" nginx drops the URI part (valid_location is unset).
            passed, tail = None, escape_uri(request.uri)
        uri = (passed or "") + tail
        return uri + "?" + request.args if request.args else uri


def rewritten_twin(plan):
    """A copy of a plain proxy plan that sends the rewritten URI, for rewritten requests."""
    twin = copy.copy(plan)
    twin.proxy = RewrittenProxyPlan(plan.location, plan.settings, plan.proxy.upstream,
                                    plan.expires)
    return twin


class Program:
    """One compiled script: its operations, with plans for returns and if-locations."""

    def __init__(self, script: conf.Script, location, settings, make_plan):
        self.rewrite_log = script.rewrite_log
        self.ops = [self._compile(op, location, settings, make_plan) for op in script.ops]

    def _compile(self, op, location, settings, make_plan):
        if isinstance(op, conf.RewriteOp):
            return ("rewrite", op, compile_template(op.replacement))
        if isinstance(op, conf.ReturnOp):
            answer_settings = dataclasses.replace(settings, return_=op.answer, rewrite=None)
            return ("return", make_plan(location, answer_settings))
        if isinstance(op, conf.SetOp):
            return ("set", op.name, compile_template(op.value))
        if isinstance(op, conf.BreakOp):
            return ("break",)
        condition = op.condition
        compiled = (condition.kind, compile_template(condition.subject),
                    compile_template(condition.operand) if condition.operand is not None
                    else None, condition.regex)
        plan = None
        body_location, body_settings = location, settings
        if op.settings is not None:
            body_location, body_settings = op.location, op.settings
            plan = make_plan(op.location, op.settings)
            if isinstance(plan, RewritePlan):
                plan = plan.content
        body = Program(op.script, body_location, body_settings, make_plan)
        return ("if", compiled, body, plan)

    def run(self, request) -> tuple[int, object, object]:
        """Run the script: (how it ended, its plan or redirect, the active if-plan or None)."""
        state = _State()
        end, value = self._run(request, state)
        if end == FELL_THROUGH:
            end = FIND if state.changed else DONE
        return end, value, state.active

    def _run(self, request, state) -> tuple[int, object]:
        for op in self.ops:
            kind = op[0]
            if kind == "rewrite":
                end = self._rewrite(request, state, op[1], op[2])
                if end is not None:
                    return end
            elif kind == "return":
                return ANSWER, op[1]
            elif kind == "set":
                _set(request, op[1], op[2].render(request))
            elif kind == "break":
                if state.changed:
                    # nginx's break code: a changed URI stays in this location, whose
                    # proxy_pass URI part is then dropped (valid_location unset).
                    request.rewritten = "break"
                return DONE, None
            elif _holds(request, op[1]):
                if op[3] is not None:
                    state.active = op[3]
                end, value = op[2]._run(request, state)
                if end != FELL_THROUGH:
                    return end, value
        return FELL_THROUGH, None

    def _rewrite(self, request, state, op: conf.RewriteOp, replacement):
        uri = request.uri
        match = op.regex.search(uri)
        if self.rewrite_log:
            verdict = "matches" if match is not None else "does not match"
            log.notice(f'*{request.connection_id} '
                       f'"{op.pattern}" {verdict} "{uri}"{client_context(request)}')
        if match is None:
            script_mismatch(request)
            return None
        set_captures(request, match)
        value = _render(replacement, request, bool(op.redirect))
        if op.redirect:
            if op.keep_args and request.args:
                value += ("&" if "?" in value else "?") + request.args
            if self.rewrite_log:
                log.notice(f'*{request.connection_id} '
                           f'rewritten redirect: "{value}"{client_context(request)}')
            return REDIRECT, (op.redirect, value)
        path, question, args = value.partition("?")
        if question:
            request.args = args + ("&" + request.args if op.keep_args and request.args else "")
        elif not op.keep_args:
            request.args = ""
        request.uri = path
        if self.rewrite_log:
            log.notice(f'*{request.connection_id} '
                       f'rewritten data: "{path}", args: "{request.args}"{client_context(request)}')
        if op.flag == "break":
            request.rewritten = "break"
            return DONE, None
        request.rewritten = "last"
        if op.flag == "last":
            return FIND, None
        state.changed = True
        return None


# nginx's NGX_ESCAPE_ARGS: controls, space, "#", "%", "&", "+", ";", "?", DEL and non-ASCII.
_ARGS_UNSAFE = frozenset(b' #%&+;?\x7f') | frozenset(range(0x20)) | frozenset(range(0x80, 0x100))


def _escape_args(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    if not any(byte in _ARGS_UNSAFE for byte in data):
        return text
    return "".join(f"%{byte:02X}" if byte in _ARGS_UNSAFE else chr(byte) for byte in data)


def _render(template, request, redirect: bool) -> str:
    """A replacement, its captures escaped as nginx escapes them.

    nginx re-escapes captures (taken from the decoded $uri) in a redirect and after the
    "?" of an internal rewrite, when the request's URI came %-encoded or with a "+"; then
    a redirect's path is partly unescaped again (_unescape_redirect).
    """
    path = request.request_uri.partition("?")[0]
    if template.static or ("%" not in path and "+" not in path):
        return template.render(request)
    out = []
    in_args = False
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            in_args = in_args or "?" in part
            continue
        value = part(request)
        if (redirect or in_args) and getattr(part, "capture", False):
            value = _escape_args(value)
        out.append(value)
    text = "".join(out)
    return _unescape_redirect(text) if redirect else text


def _unescape_redirect(text: str) -> str:
    """nginx's NGX_UNESCAPE_REDIRECT: up to "?", decode %XX of characters above "%" and
    below DEL, keep the others escaped."""
    path, question, args = text.partition("?")
    if "%" not in path:
        return text
    out = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "%" and _is_hex(path[i + 1:i + 3]):
            byte = int(path[i + 1:i + 3], 16)
            if 0x25 < byte < 0x7F:
                out.append(chr(byte))
                i += 3
                continue
        out.append(ch)
        i += 1
    return "".join(out) + question + args


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


class _State:
    __slots__ = ("active", "changed")

    def __init__(self):
        self.active = None      # the plan of the last "if" location whose condition held
        self.changed = False


def _set(request, name: str, value: str) -> None:
    if name == "limit_rate":
        limit_rate.set_variable(request, value)
        return
    if name in ("args", "query_string"):
        request.args = value
        if getattr(request, "rewritten", None) is None:
            # The request line no longer names what is proxied (nginx: valid_unparsed_uri).
            request.rewritten = "args"
        return
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    values[name] = value


def _holds(request, condition) -> bool:
    """nginx's if conditions: a variable, =, !=, regexes, and file tests."""
    kind, subject, operand, regex = condition
    value = subject.render(request)
    if kind == "variable":
        return value not in ("", "0")
    if kind == "=":
        return value == operand.render(request)
    if kind == "!=":
        return value != operand.render(request)
    if kind in ("~", "!~"):
        match = regex.search(value)
        if match is not None:
            set_captures(request, match)     # "!~" too: the regex ran (nginx)
        else:
            script_mismatch(request)
        return (match is not None) == (kind == "~")
    negated = kind.startswith("!")
    test = kind[-1]
    if test == "f":
        result = os.path.isfile(value)
    elif test == "d":
        result = os.path.isdir(value)
    elif test == "e":
        result = os.path.lexists(value)
    else:
        result = os.path.isfile(value) and os.access(value, os.X_OK)
    return result != negated


def client_context(request) -> str:
    """The ", client: ..., server: ..., request: ..., host: ..., referrer: ..." tail of nginx's
    error lines about a request (ngx_http_log_error_handler); the line begins with "*N ", the
    connection's number, as nginx's do (log filters such as fail2ban's match both)."""
    host = f', host: "{request.host}"' if request.host else ""
    return (f", client: {request.remote_addr}, server: {request.server_name}, "
            f'request: "{request.method} {request.request_uri} {request.protocol}"{host}'
            f"{referrer_context(request)}")


def referrer_context(request) -> str:
    referer = request.header("referer")
    return f', referrer: "{referer}"' if referer else ""


def rewrite_plan(plan, location, settings, make_plan):
    """Wrap a plan whose level has a script; its proxying follows rewrites."""
    if plan.kind == "proxy":
        plan.proxy = RewrittenProxyPlan(location, settings, plan.proxy.upstream, plan.expires)
    return RewritePlan(plan, compiled(Program(settings.rewrite, location, settings, make_plan)))


_return_twins: dict = {}


def with_headers_of(return_plan, active):
    """A return plan answering with the add_header list of the if-location that holds."""
    key = (id(return_plan), id(active))
    twin = _return_twins.get(key)
    if twin is None:
        twin = copy.copy(return_plan)
        twin.add_headers = active.add_headers
        _return_twins[key] = (twin, return_plan, active)   # keeps both ids valid
        return twin
    return twin[0]


_fast = load_fast("rewrite")


def compiled(program: Program):
    """The compiled twin of ``program`` when built; scripts with rewrite_log stay here."""
    if _fast is None or program.rewrite_log:
        return program
    return _fast.Program(program)
