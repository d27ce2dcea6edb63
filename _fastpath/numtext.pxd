"""Numbers as text without printf, for the access log path (logformat, proxyproto).

Inline functions: each module that cimports them gets its own copy; there is nothing to build.
"""

from libc.math cimport copysign, fabs, floor
from libc.stdio cimport snprintf


cdef inline int decimal(long long value, char* out):
    """value in decimal into out (room for 21 bytes); its length. snprintf costs ten times as much."""
    cdef char digits[24]
    cdef int i = 24, n
    cdef bint negative = value < 0
    cdef unsigned long long rest = <unsigned long long>(-value) if negative else <unsigned long long>value
    while True:
        i -= 1
        digits[i] = <char>(48 + rest % 10)
        rest //= 10
        if rest == 0:
            break
    if negative:
        i -= 1
        digits[i] = 45
    for n in range(24 - i):
        out[n] = digits[i + n]
    return 24 - i


cdef inline int fixed3(double seconds, char* out):
    """"%.3f" % seconds into out (room for 48 bytes); its length, or -1 outside [0, 1e9) (the
    caller formats those in Python). printf's float formatting is the costly part of a log
    line: this takes the short way unless the value sits so close to a rounding tie that only
    printf's exact arithmetic rounds it as Python does."""
    cdef double scaled, whole, fraction
    cdef long long millis
    cdef int n
    if not (0.0 <= seconds < 1e9) or copysign(1.0, seconds) < 0:     # -0.0 prints its sign
        return -1
    scaled = seconds * 1000.0
    whole = floor(scaled)
    fraction = scaled - whole
    if fabs(fraction - 0.5) < 1e-6:
        return snprintf(out, 48, "%.3f", seconds)
    millis = <long long>whole + (1 if fraction > 0.5 else 0)
    n = decimal(millis // 1000, out)
    out[n] = 46
    millis %= 1000
    out[n + 1] = <char>(48 + millis // 100)
    out[n + 2] = <char>(48 + millis // 10 % 10)
    out[n + 3] = <char>(48 + millis % 10)
    return n + 4
