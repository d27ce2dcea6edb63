# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of rendering templates, reading regex captures and evaluating maps.

The specifications are gateway/http/variables.py (Template.render and the getters of
``$uri``, ``$args``, ``$request_method``, ``$request_uri``, ``$1``..``$9`` and the
configuration's variables), gateway/http/captures.py (set_captures, script_mismatch,
numbered, named) and gateway/http/maps.py (MapVariable).  Each compiled object is built
from its twin and gives the same strings; parts it does not know call the twin's getter.
Requests of the compiled class (_fastpath/request.pyx) have their fields read at C level;
any other request is handed to the twin whole.  tests/http/test_rewrite_parity.py
compares them.
"""

import re
import re._constants as sre_constants
import re._parser as sre_parser

from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_Tailmatch

from _fastpath.request cimport Request

from gateway.http import captures as captures_py
from gateway.http.captures import NUMBERED as _NUMBERED_KEY, _FLUSHED as _FLUSHED_KEY
from gateway.http.variables import _user_evaluators as _user_evaluators_py, variable_getter

cdef str NUMBERED = _NUMBERED_KEY
cdef str FLUSHED = _FLUSHED_KEY
# The configuration's own variables (variables._user_evaluators, changed in place).
cdef dict _user_evaluators = _user_evaluators_py
cdef object _MISSING = object()

cdef enum:
    P_TEXT
    P_CAPTURE       # $1..$9
    P_URI
    P_ARGS
    P_METHOD
    P_REQUEST_URI
    P_USER          # a map, split_clients, set or named capture variable
    P_CALL          # any other getter, called

# The built-in getters read here as the request's own fields.
cdef dict _FIELDS = {
    variable_getter("uri"): P_URI, variable_getter("document_uri"): P_URI,
    variable_getter("args"): P_ARGS, variable_getter("query_string"): P_ARGS,
    variable_getter("request_method"): P_METHOD,
    variable_getter("request_uri"): P_REQUEST_URI,
}


# Captures (gateway/http/captures.py) ------------------------------------------------

cdef dict flushed(Request request):
    """captures._flushed: the request's variables with the pending captures applied."""
    values = request.vars
    if values is not None:
        if FLUSHED in <dict>values:
            return <dict>values
        return captures_py.flush(request)
    if _nothing_pending(request.server, request.location):
        values = {FLUSHED: True}    # flush's result, without the call
        request.vars = values
        return <dict>values
    return captures_py.flush(request)


# The last server and location asked about, and the answer: requests come in runs of one.
cdef object _last_server = None, _last_location = None
cdef bint _last_nothing = False


cdef bint _nothing_pending(server, location) except -1:
    """Neither the server's name nor the location has regexes whose captures flush applies."""
    global _last_server, _last_location, _last_nothing
    if server is _last_server and location is _last_location and server is not None:
        return _last_nothing
    _last_nothing = (server is None or not server.capture_regexes) and \
        (location is None or not location.capture_regexes)
    _last_server, _last_location = server, location
    return _last_nothing


cdef int set_captures(Request request, match, bint named) except -1:
    """captures.set_captures; ``named``: the regex has named groups."""
    if named:
        captures_py.set_captures(request, match)
    else:
        flushed(request)[NUMBERED] = match
    return 0


cdef int script_mismatch(Request request) except -1:
    flushed(request).pop(NUMBERED, None)
    return 0


cdef object _numbered(Request request, Py_ssize_t index):
    """captures.numbered."""
    values = request.vars
    # A match is only ever stored once the pending captures were applied: no flush check.
    match = (<dict>values).get(NUMBERED) if values is not None else None
    if match is None:
        match = flushed(request).get(NUMBERED)
    if match is None:
        return ""
    try:
        value = match[index]
    except IndexError:      # the regex has fewer groups
        return ""
    return "" if value is None else value


cdef object _user_value(Request request, str name):
    """variables._user's getter: evaluated once per request unless volatile."""
    evaluate = _user_evaluators.get(name)
    if evaluate is None:        # only a regex's (?<name>...) group sets it
        return flushed(request).get(name, "")
    values = request.vars
    if values is None:
        values = {}
        request.vars = values
    else:
        value = (<dict>values).get(name, _MISSING)
        if value is not _MISSING:
            return value
    cdef bint volatile
    if type(evaluate) is MapVariable:
        value = (<MapVariable>evaluate).evaluate(request)
        volatile = (<MapVariable>evaluate).volatile
    else:
        value = evaluate(request)
        volatile = evaluate.volatile
    if not volatile:
        (<dict>values)[name] = value
    return value


# Regexes ------------------------------------------------------------------------------

def anchored_prefix(regex):
    """The literal text every match of ``regex`` starts with, when it begins with "^"
    (no MULTILINE, no IGNORECASE): a subject without it cannot match.  Else None."""
    if not isinstance(regex.pattern, str) or regex.flags & (re.IGNORECASE | re.MULTILINE):
        return None
    try:
        items = list(sre_parser.parse(regex.pattern, regex.flags))
    except Exception:
        return None
    if not items or items[0] != (sre_constants.AT, sre_constants.AT_BEGINNING):
        return None
    prefix = []
    for op, value in items[1:]:
        if op != sre_constants.LITERAL:
            break
        prefix.append(chr(value))
    return "".join(prefix) or None


cdef class Searcher:
    """regex.search, skipped when the subject lacks the pattern's anchored literal prefix."""

    def __init__(self, regex):
        self.search = regex.search
        self.prefix = anchored_prefix(regex)
        self.named = bool(regex.groupindex)

    cdef object find(self, str subject):
        if self.prefix is not None and \
                PyUnicode_Tailmatch(subject, self.prefix, 0, PyUnicode_GET_LENGTH(subject), -1) != 1:
            return None
        return self.search(subject)


# Templates (gateway/http/variables.py) -------------------------------------------

cdef class Template:
    """variables.Template, rendered without a call per part for the parts it knows."""

    def __init__(self, spec):
        self.spec = spec
        self.static = spec.static
        self.text = spec.text
        kinds, values = [], []
        for part in spec.parts:
            if isinstance(part, str):
                kind, value = P_TEXT, part
            elif getattr(part, "number", None) is not None:
                kind, value = P_CAPTURE, part.number
            elif part in _FIELDS:
                kind, value = _FIELDS[part], None
            elif getattr(part, "user_name", None) is not None:
                kind, value = P_USER, part.user_name
            else:
                kind, value = P_CALL, part
            kinds.append(kind)
            values.append(value)
        self.kinds = tuple(kinds)
        self.values = tuple(values)
        self.n = len(kinds)

    def render_py(self, request):
        """render(), for tests."""
        return self.render(request)

    cdef object render(self, request):
        if self.static:
            return self.text
        if type(request) is not Request:
            return self.spec.render(request)
        cdef Request r = <Request>request
        if self.n == 1:
            return self._part(0, r)
        if self.n == 2:
            first = self._part(0, r)
            second = self._part(1, r)
            if type(first) is str and type(second) is str:
                return <str>first + <str>second
            return "".join([first, second])
        return "".join([self._part(i, r) for i in range(self.n)])

    cdef object _part(self, Py_ssize_t i, Request request):
        cdef int kind = self.kinds[i]
        if kind == P_TEXT:
            return self.values[i]
        if kind == P_URI:
            return request.uri
        if kind == P_ARGS:
            return request.args
        if kind == P_METHOD:
            return request.method
        if kind == P_REQUEST_URI:
            return request.request_uri
        if kind == P_CAPTURE:
            return _numbered(request, self.values[i])
        if kind == P_USER:
            return _user_value(request, self.values[i])
        return self.values[i](request)


# Maps (gateway/http/maps.py) ----------------------------------------------------------

cdef class MapVariable:
    """maps.MapVariable: exact keys and regexes here; maps with wildcards ask the twin."""

    always_found = True

    def __init__(self, spec):
        self.spec = spec
        self.volatile = spec.volatile
        self.source = Template(spec.source)
        self.default = Template(spec.default)
        self.exact = {key: Template(value) for key, value in spec.exact.items()}
        self.regexes = tuple((Searcher(regex), Template(value)) for regex, value in spec.regexes)
        self.hostnames = spec.hostnames
        self.wildcards = bool(spec.head) or bool(spec.tail)

    def __call__(self, request):
        return self.evaluate(request)

    cdef object evaluate(self, request):
        cdef Searcher searcher
        if self.wildcards or type(request) is not Request:
            return self.spec(request)
        key = self.source.render(request)
        if self.hostnames and key.endswith("."):
            key = key[:len(key) - 1]
        value = self.exact.get(key.lower()) if self.exact else None
        if value is None and key:     # nginx tries the regexes only on a non-empty value
            for searcher, template in self.regexes:
                match = searcher.find(key)
                if match is not None:
                    set_captures(<Request>request, match, searcher.named)
                    value = template
                    break
        if value is None:
            value = self.default
        return (<Template>value).render(request)
