# Declarations of _fastpath/wire.pyx that _fastpath/ukpath.pyx calls at C level.
from libc.stdint cimport uint8_t, uint32_t


cdef class Message:
    cdef readonly bytes src
    cdef readonly unsigned int req_id
    cdef readonly int op, status, flags
    cdef readonly unsigned int now
    cdef readonly bytes payload


cdef class Reassembler:
    cdef public Py_ssize_t max_pending
    cdef dict _pending          # (src, req_id) -> _Partial, oldest first
    cdef object _feed(self, const uint8_t *p, Py_ssize_t n, int *code)


cdef list encode_frames(bytes dst, bytes src, uint32_t req_id, uint32_t op, bytes payload, uint32_t now)
cdef Py_ssize_t receive_into(int fd, Reassembler reassembler, Py_ssize_t limit, list out,
                             Py_ssize_t *malformed) except -1
cdef Py_ssize_t send_list(int fd, list frames) except -1
