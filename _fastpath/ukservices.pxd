"""C interface of _fastpath/ukservices.pyx, for _fastpath/ukpath.pyx."""

cdef enum:
    SVC_ECHO = 0
    SVC_KV
    SVC_STATIC
    SVC_AUTH
    SVC_WEBHOOK

# What part of the request a location's unikernel_pass sends (part_kind).
cdef enum:
    PART_URI = 0
    PART_BODY
    PART_ARGS
    PART_HEADER

cdef int service_code(str service) except -1
cdef int part_kind(str spec)
cdef object uri_prefix(location)
cdef object part_of(request, bytes body, str spec, int part, known_location, known_prefix)
cdef tuple build(int kind, request, bytes body, str spec, int part, known_location, known_prefix)
cdef tuple read(int kind, request, int status, bytes payload)
