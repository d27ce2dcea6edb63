"""C interface of _fastpath/variables.pyx, for modules that cimport it (rewrite, proxyproto)."""

from _fastpath.request cimport Request


cdef class Template:
    cdef readonly object spec       # the variables.Template compiled
    cdef bint static
    cdef str text
    cdef tuple kinds                # one part kind per part (P_TEXT ...)
    cdef tuple values               # its text, capture number, variable name or getter
    cdef Py_ssize_t n

    cdef object render(self, request)
    cdef object _part(self, Py_ssize_t i, Request request)


cdef class MapVariable:
    cdef readonly object spec       # the maps.MapVariable compiled
    cdef readonly bint volatile
    cdef Template source, default
    cdef dict exact                 # lowercase key -> Template
    cdef tuple regexes              # (Searcher, Template)
    cdef bint hostnames, wildcards

    cdef object evaluate(self, request)


cdef class Searcher:
    cdef object search              # regex.search, bound once
    cdef str prefix                 # what every match starts with (a "^literal" pattern), or None
    cdef bint named                 # the regex has named groups

    cdef object find(self, str subject)


cdef dict flushed(Request request)
cdef int set_captures(Request request, match, bint named) except -1
cdef int script_mismatch(Request request) except -1
