"""C interface of _fastpath/router.pyx, for modules that cimport it (proxyproto)."""


cdef class _Level:
    cdef dict exact
    cdef dict prefixes
    cdef dict prefix_levels         # pattern -> (location, its _Level)
    cdef Py_ssize_t[64] lengths     # distinct prefix lengths, longest first
    cdef Py_ssize_t nlengths
    cdef tuple long_lengths         # used instead when there are more than 64
    cdef list regexes               # [(search, location, level)]
    cdef dict children              # id(location) -> _Level
    cdef dict redirects             # "/app" -> the "/app/" location (auto_redirect)
    cdef frozenset redirect_lengths # the lengths of those keys
    cdef bint owner_caret           # the location owning this level is "^~" (no regexes)

    cdef object longest_prefix(self, str uri)
    cdef tuple _longest_entry(self, str uri)
    cdef int find(self, str uri, list out, bint redirects) except -1


cdef class LocationRouter:
    cdef _Level top
    cdef dict _named
    cdef list _out                  # locate()'s result slot

    cdef object locate(self, str uri, bint* redirect)
