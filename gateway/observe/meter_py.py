"""A location's request counts between two publications (pure Python; _fastpath/meter.pyx is its
compiled twin, this is the specification)."""

from __future__ import annotations

import time
from bisect import bisect_left

CLASSES = 6     # cells 0..5: requests by status // 100 (0: no status, or one above 599)


class LocationMeter:
    """Counts by status class and response-time bucket, and the sum of response times."""

    __slots__ = ("server", "location", "bounds", "cells", "seconds")

    def __init__(self, server: str, location: str, bounds: tuple[float, ...]):
        self.server = server
        self.location = location
        self.bounds = tuple(bounds)
        self.cells = [0] * (CLASSES + len(bounds) + 1)     # classes, buckets, +Inf
        self.seconds = 0.0

    def record(self, request) -> None:
        """The log phase of one request: its status and its time since start_time (monotonic)."""
        seconds = time.monotonic() - request.start_time
        status = request.status
        cells = self.cells
        cells[status // 100 if 0 <= status < 600 else 0] += 1
        cells[CLASSES + bisect_left(self.bounds, seconds)] += 1     # le: the first bound >= it
        self.seconds += seconds

    def take(self) -> tuple[list[int], float]:
        """(cells, sum of seconds) counted since the last take; counting starts again from zero."""
        cells, seconds = self.cells, self.seconds
        self.cells = [0] * len(cells)
        self.seconds = 0.0
        return cells, seconds
