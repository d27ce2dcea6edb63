"""The event loop's clock read at C level, for the compiled modules that keep loop time
(proxyproto, ukpath).

Inline functions: each module that cimports them gets its own copy; there is nothing to build.
"""

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic() noexcept:
    """loop.time() without a Python call: uvloop's and asyncio's clocks are both
    CLOCK_MONOTONIC in seconds (uvloop's rounded to the millisecond it cached when
    the loop iteration began; this reading is exact, so never earlier than it)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline bint is_native_clock(clock, dict known_classes) except -1:
    """Whether clock is uvloop's or asyncio's own loop.time (not a test's fake); the answer
    per loop class is kept in the caller's ``known_classes``."""
    owner = getattr(clock, "__self__", None)
    cls = type(owner)
    known = known_classes.get(cls)
    if known is None:
        import asyncio
        import uvloop
        own = getattr(cls, "time", None)
        known = known_classes[cls] = getattr(clock, "__name__", "") == "time" and (
            own is uvloop.Loop.time or own is asyncio.BaseEventLoop.time)
    return known
