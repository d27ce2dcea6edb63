"""The compiled LocationMeter (_fastpath/meter.pyx) counts as its specification, meter_py, does."""

import time

import pytest

from gateway.observe import meter_py
from gateway.observe.metrics import BOUNDS


class Request:
    def __init__(self, status, age):
        self.status = status
        self.start_time = time.monotonic() - age


# Ages sit well inside their buckets (0.005, 0.01, ... 10), so the microseconds between making
# the request and recording it never cross a bound.
SAMPLES = [(200, 0.001), (204, 0.007), (301, 0.02), (404, 0.3), (499, 0.7), (502, 3.0),
           (503, 20.0), (0, 0.001), (700, 0.001), (101, 0.04), (200, 0.0001)]


def test_twins_count_alike():
    try:
        from _fastpath.meter import LocationMeter as Compiled
    except ImportError as exc:
        pytest.fail(f"_fastpath.meter is not built ({exc}): run `make extensions`")
    results = []
    for cls in (meter_py.LocationMeter, Compiled):
        meter = cls("example", "/api/", BOUNDS)
        for status, age in SAMPLES:
            meter.record(Request(status, age))
        cells, seconds = meter.take()
        assert meter.take() == ([0] * len(cells), 0.0)     # taken: counting starts again
        results.append((cells, round(seconds, 2), meter.server, meter.location))
    assert results[0] == results[1]
    cells = results[0][0]
    assert cells[:6] == [2, 1, 3, 1, 2, 2]            # no status and 700 count as class 0
    assert cells[6:] == [4, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1]
