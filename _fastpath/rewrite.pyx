# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of the rewrite module's scripts (rewrite, return, set, if and break).

The specification is gateway/http/rewrite.py (Program.run, _rewrite, _render, _holds,
_set): a Program here is built from the twin's compiled ops and ends a script the same
way, with the same request changes.  Rare branches call the twin's own functions: captures
re-escaped for a %-encoded request line, file tests, ``set`` of nginx's changeable
variables.  Scripts with rewrite_log on stay with the twin (it writes the log lines), and
so do requests of another class than the compiled one (_fastpath/request.pyx).
tests/http/test_rewrite_parity.py compares both.
"""

from cpython.unicode cimport (PyUnicode_1BYTE_DATA, PyUnicode_1BYTE_KIND, PyUnicode_FindChar,
                              PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_Substring)

from _fastpath.request cimport Request
from _fastpath.variables cimport Searcher, Template, script_mismatch, set_captures

from gateway.http import rewrite as rewrite_py

# How a script ended: rewrite.py's values.
cdef enum:
    FELL_THROUGH = 0
    DONE = 1
    FIND = 2
    ANSWER = 3
    REDIRECT = 4
    GO_ON = -1          # a rewrite that did not end the script

assert (rewrite_py.FELL_THROUGH, rewrite_py.DONE, rewrite_py.FIND, rewrite_py.ANSWER,
        rewrite_py.REDIRECT) == (FELL_THROUGH, DONE, FIND, ANSWER, REDIRECT)

cdef enum:
    O_REWRITE
    O_RETURN
    O_SET
    O_BREAK
    O_IF

cdef enum:
    C_VARIABLE
    C_EQUAL
    C_NOT_EQUAL
    C_MATCH
    C_NOT_MATCH
    C_FILE          # -f, -d, -e, -x and their negations: the twin's _holds

cdef enum:
    F_NONE
    F_LAST
    F_BREAK

cdef dict _CONDITIONS = {"variable": C_VARIABLE, "=": C_EQUAL, "!=": C_NOT_EQUAL,
                         "~": C_MATCH, "!~": C_NOT_MATCH}


cdef class _State:
    pass


cdef class _Op:
    pass


cdef _Op _compile(tuple spec):
    cdef _Op op = _Op.__new__(_Op)
    op.spec = spec
    kind = spec[0]
    if kind == "rewrite":
        rule = spec[1]
        op.kind = O_REWRITE
        op.searcher = Searcher(rule.regex)
        op.template = Template(spec[2])
        op.redirect = rule.redirect
        op.keep_args = rule.keep_args
        op.flag = F_LAST if rule.flag == "last" else F_BREAK if rule.flag == "break" else F_NONE
    elif kind == "return":
        op.kind = O_RETURN
        op.plan = spec[1]
    elif kind == "set":
        op.kind = O_SET
        op.name = spec[1]
        op.template = Template(spec[2])
    elif kind == "break":
        op.kind = O_BREAK
    else:
        condition, regex = spec[1], spec[1][3]
        op.kind = O_IF
        op.condition = _CONDITIONS.get(condition[0], C_FILE)
        op.template = Template(condition[1])
        if condition[2] is not None:
            op.operand = Template(condition[2])
        if regex is not None:
            op.searcher = Searcher(regex)
        op.body = Program(spec[2])
        op.plan = spec[3]
    return op


cdef class Program:
    """rewrite.Program, built from the twin (``spec``) once its ops are compiled."""

    def __init__(self, spec):
        if spec.rewrite_log:
            raise ValueError("scripts with rewrite_log on are run by the twin")
        self.spec = spec
        self.ops = tuple([_compile(op) for op in spec.ops])
        self.state = _State.__new__(_State)

    @property
    def rewrite_log(self):
        return False

    cpdef tuple run(self, request):
        """Run the script: (how it ended, its plan or redirect, the active if-plan or None)."""
        if type(request) is not Request:
            return self.spec.run(request)
        cdef int end = self.execute(<Request>request)
        return (end, self.state.value, self.state.active)

    cdef int execute(self, Request request) except -1:
        """run() without its tuple: how the script ended; self.state has the rest."""
        cdef _State state = self.state
        state.value = state.active = None
        state.changed = False
        cdef int end = self._run(request, state)
        if end == FELL_THROUGH:
            end = FIND if state.changed else DONE
        return end

    cdef int _run(self, Request request, _State state) except -1:
        cdef _Op op
        cdef int end
        for op in self.ops:
            if op.kind == O_REWRITE:
                end = _rewrite(request, state, op)
                if end != GO_ON:
                    return end
            elif op.kind == O_RETURN:
                state.value = op.plan
                return ANSWER
            elif op.kind == O_SET:
                _set(request, op.name, op.template.render(request))
            elif op.kind == O_BREAK:
                if state.changed:
                    # nginx's break code: a changed URI stays in this location, whose
                    # proxy_pass URI part is then dropped (valid_location unset).
                    request.rewritten = "break"
                return DONE
            elif _holds(request, op):
                if op.plan is not None:
                    state.active = op.plan
                end = op.body._run(request, state)
                if end != FELL_THROUGH:
                    return end
        return FELL_THROUGH


cdef int _rewrite(Request request, _State state, _Op op) except -2:
    """rewrite.Program._rewrite: GO_ON, or how the script ends."""
    match = op.searcher.find(request.uri)
    if match is None:
        script_mismatch(request)
        return GO_ON
    set_captures(request, match, op.searcher.named)
    value = _render(request, op)
    args = request.args
    cdef Py_ssize_t question
    if op.redirect:
        if op.keep_args and args:
            value = value + ("&" if "?" in value else "?") + args
        state.value = (op.redirect, value)
        return REDIRECT
    question = _find(value, c"?")
    if question >= 0:
        rest = PyUnicode_Substring(value, question + 1, PyUnicode_GET_LENGTH(value))
        request.args = rest + "&" + args if op.keep_args and args else rest
        value = PyUnicode_Substring(value, 0, question)
    elif not op.keep_args:
        request.args = ""
    request.uri = value
    if op.flag == F_BREAK:
        request.rewritten = "break"
        return DONE
    request.rewritten = "last"
    if op.flag == F_LAST:
        return FIND
    state.changed = True
    return GO_ON


cdef object _render(Request request, _Op op):
    """rewrite._render: the twin re-escapes captures when the request line has "%" or "+"."""
    cdef Template template = op.template
    if template.static:
        return template.text
    if _escaped_path(request.request_uri):
        return rewrite_py._render(template.spec, request, bool(op.redirect))
    return template.render(request)


cdef Py_ssize_t _find(str text, Py_UCS4 ch) except -2:
    """text.find(ch), scanned here for one-byte strings."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    cdef const unsigned char* data
    if PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND:
        return PyUnicode_FindChar(text, ch, 0, n, 1)
    data = <const unsigned char*>PyUnicode_1BYTE_DATA(text)
    for i in range(n):
        if data[i] == ch:
            return i
    return -1


cdef bint _escaped_path(str request_uri) except -1:
    """Whether the path of the request line (up to "?") has a "%" or a "+"."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(request_uri)
    cdef const unsigned char* data
    if PyUnicode_KIND(request_uri) != PyUnicode_1BYTE_KIND:
        path = request_uri.partition("?")[0]
        return "%" in path or "+" in path
    data = <const unsigned char*>PyUnicode_1BYTE_DATA(request_uri)
    for i in range(n):
        if data[i] == c"?":
            return False
        if data[i] == c"%" or data[i] == c"+":
            return True
    return False


cdef bint _holds(Request request, _Op op) except -1:
    """rewrite._holds."""
    if op.condition == C_FILE:
        return rewrite_py._holds(request, op.spec[1])
    value = op.template.render(request)
    if op.condition == C_VARIABLE:
        return not (value == "" or value == "0")
    if op.condition == C_EQUAL:
        return value == op.operand.render(request)
    if op.condition == C_NOT_EQUAL:
        return value != op.operand.render(request)
    match = op.searcher.find(value)
    if match is not None:
        set_captures(request, match, op.searcher.named)     # "!~" too: the regex ran (nginx)
    else:
        script_mismatch(request)
    return (match is not None) == (op.condition == C_MATCH)


cdef int _set(Request request, str name, value) except -1:
    """rewrite._set: nginx's changeable variables go to the twin."""
    if name == "limit_rate" or name == "args" or name == "query_string":
        rewrite_py._set(request, name, value)
        return 0
    values = request.vars
    if values is None:
        values = {}
        request.vars = values
    (<dict>values)[name] = value
    return 0
