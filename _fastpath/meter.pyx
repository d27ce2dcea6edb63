# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of gateway/observe/meter_py.py: a location's counts in C arrays."""

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

DEF MAX_CELLS = 64
cdef int CLASSES = 6


cdef class LocationMeter:
    """Counts by status class and response-time bucket, and the sum of response times."""

    cdef public object server, location, bounds
    cdef double c_bounds[MAX_CELLS]
    cdef long long cells[MAX_CELLS]
    cdef int nbounds, ncells
    cdef double seconds

    def __init__(self, str server, str location, bounds):
        self.server = server
        self.location = location
        self.bounds = tuple(bounds)
        if CLASSES + len(self.bounds) + 1 > MAX_CELLS:
            raise ValueError("too many bounds")
        self.nbounds = len(self.bounds)
        self.ncells = CLASSES + self.nbounds + 1
        for i in range(self.nbounds):
            self.c_bounds[i] = self.bounds[i]
        for i in range(self.ncells):
            self.cells[i] = 0
        self.seconds = 0.0

    def record(self, request):
        """The log phase of one request: its status and its time since start_time (monotonic)."""
        cdef timespec ts
        clock_gettime(CLOCK_MONOTONIC, &ts)
        cdef double seconds = ts.tv_sec + ts.tv_nsec * 1e-9 - <double>request.start_time
        cdef long status = request.status
        self.cells[status // 100 if 0 <= status < 600 else 0] += 1
        cdef int i = 0
        while i < self.nbounds and self.c_bounds[i] < seconds:
            i += 1
        self.cells[CLASSES + i] += 1
        self.seconds += seconds

    def take(self):
        """(cells, sum of seconds) counted since the last take; counting starts again from zero."""
        cells = [self.cells[i] for i in range(self.ncells)]
        seconds = self.seconds
        for i in range(self.ncells):
            self.cells[i] = 0
        self.seconds = 0.0
        return cells, seconds
