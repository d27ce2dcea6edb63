"""C interface of _fastpath/balancing.pyx, for modules that cimport it (proxyproto)."""

from libc.stdint cimport uint64_t

cdef enum:
    # Tried bits kept inside the selection object: up to 128 peers per list.
    INLINE_WORDS = 2

cdef class RoundRobin


cdef class Peer:
    cdef public Py_ssize_t index              # position in its list (nginx's tried bit)
    cdef public object name, host, port
    cdef public long weight, max_fails, max_conns
    cdef public double fail_timeout
    cdef public bint backup, down, healthy    # healthy: set by active health checks
    cdef public long conns, fails, effective_weight, current_weight
    cdef public double accessed               # time of the last failure
    cdef public double checked                # start of the current fail_timeout window
    cdef public object header_time, response_time   # EWMA seconds, None until sampled


cdef class Selection:
    cdef RoundRobin balancer
    cdef list peers                       # the list in use: primary, then backup
    cdef uint64_t inline_tried[INLINE_WORDS]
    cdef uint64_t *tried                  # bit i set: peers[i] already tried
    cdef Py_ssize_t words
    cdef bint yielded, done

    cdef Peer next_peer(self)
    cdef bint is_tried(self, Py_ssize_t index)
    cdef void mark(self, Py_ssize_t index)
    cdef void clear(self)


cdef class RoundRobin:
    cdef public object upstream, name, key_template
    cdef public list peers, backup
    cdef public bint single
    cdef public long total_weight
    cdef object clock
    cdef bint native_clock

    cdef Selection new_selection(self)
    cdef int finish(self, Peer peer, bint failed, header_time, response_time) except -1
    cdef Peer _get(self, Selection selection)
    cdef double _now(self) except? -1.0
    cdef Peer _get_rr(self, Selection selection)
    cdef Peer _best_rr(self, Selection selection, double now)
    cdef void _taken(self, Selection selection, Peer peer, double now)
    cdef bint _to_backup(self, Selection selection)


cdef class LeastConn(RoundRobin):
    cdef Peer _get(self, Selection selection)
