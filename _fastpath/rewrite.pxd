"""C interface of _fastpath/rewrite.pyx, for modules that cimport it (proxyproto)."""

from _fastpath.request cimport Request
from _fastpath.variables cimport Searcher, Template


cdef class _State:
    cdef object value       # the return plan, or the redirect (code, URL)
    cdef object active      # the plan of the last "if" location whose condition held
    cdef bint changed


cdef class _Op:
    cdef int kind, condition, flag, redirect
    cdef bint keep_args
    cdef object spec            # the twin's op tuple
    cdef Searcher searcher      # rewrite and regex conditions
    cdef Template template      # replacement, set value or condition subject
    cdef Template operand       # "=" and "!=" conditions
    cdef object plan            # return's plan, the if location's plan
    cdef str name               # set
    cdef Program body           # if


cdef class Program:
    cdef readonly object spec
    cdef tuple ops
    cdef _State state           # the last run's (a worker runs one script at a time)

    cpdef tuple run(self, request)
    cdef int execute(self, Request request) except -1
    cdef int _run(self, Request request, _State state) except -1
