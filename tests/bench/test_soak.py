"""The soak bench (issue 16 item 2): its judging on made-up samples, and its 60-second variant for real."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from bench import soak

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Twice the bench's 5 % goal, so a noisy shared machine does not fail the suite, yet still real:
# 10 % of the worker's ~28 MiB is ~3 MiB over the ~30 s between the two windows, about half a
# million requests, so a leak of even ~6 bytes per request fails it.
TOLERANCE_PCT = 10.0


def made_up_record(worker_rss_end, worker_fds_after):
    """Samples every second for 20 s of load: flat, except the worker's RSS ramping to worker_rss_end."""
    rows = []
    for t in range(21):
        rss = 30000 + (worker_rss_end - 30000) * t / 20
        rows += [{"t": t, "phase": "load", "kind": "master", "pid": 1, "rss_kib": 30000, "pss_kib": 1, "fds": 5},
                 {"t": t, "phase": "load", "kind": "worker", "pid": 2, "rss_kib": rss, "pss_kib": 1, "fds": 400}]
    return {"rows": rows, "load_end_s": 20, "fds_before": {1: 5, 2: 20}, "fds_after": {1: 5, 2: worker_fds_after},
            "kinds": {1: "master", 2: "worker"},
            "wrk": {"proxied": {"requests": 10, "socket_errors": 0, "non2xx": 0},
                    "unikernel": {"requests": 10, "socket_errors": 0, "non2xx": 0}}}


def test_flat_samples_pass_every_goal():
    record = made_up_record(30000, 20)
    assert soak.judge(record, SimpleNamespace(warmup=4))
    assert record["window_s"] == 4
    assert record["growth"]["worker rss_kib"] == (30000, 30000, 0.0)


def test_growing_memory_and_a_kept_descriptor_fail():
    record = made_up_record(33000, 21)      # +10 % over the load, one descriptor not given back
    assert not soak.judge(record, SimpleNamespace(warmup=4))
    failed = [text for text, ok in record["goals"] if not ok]
    assert len(failed) == 2
    assert failed[0].startswith("worker rss growth +")
    assert failed[1] == "descriptors back after the load: master 5 -> 5, worker 20 -> 21"


def test_chart_is_svg_with_a_line_per_kind():
    text = soak.svg_chart([("RSS (MiB)", {"master": [(0, 30.0), (5, 30.5)], "worker": [(0, 27.0), (5, 27.0)]})],
                          [(2, "warm-up end")], "t")
    root = ET.fromstring(text)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    assert soak.nice_step(38.2) == 10 and soak.nice_step(1030) == 250


@pytest.mark.qemu
@pytest.mark.slow
def test_sixty_second_soak_has_no_errors_and_no_leak(tmp_path):
    # 400 connections, not 1,000: at 1,000 the one saturated worker's slowest answers took up to
    # 4.4 s on this shared 2-core machine, too near wrk's 5 s timeout for the suite.
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--duration", "60", "--connections", "400",
         "--sample-every", "2", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    # Exit 1 means the 5 % goal was missed; judged below with the suite's tolerance instead.
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stdout + done.stderr
    [path] = tmp_path.glob("*-soak.json")
    record = json.loads(path.read_text())
    for route, result in record["wrk"].items():
        assert result.get("requests", 0) > 0, (route, result)
        assert result["socket_errors"] == 0 and result["non2xx"] == 0, (route, result)
    assert record["fds_after"] == record["fds_before"]      # no descriptor kept once the load stopped
    assert not record["qemu_restarted"]
    for name in ("master rss_kib", "worker rss_kib", "qemu rss_kib", "worker fds"):
        first, last, pct = record["growth"][name]
        assert pct < TOLERANCE_PCT, (name, first, last)
    assert path.with_suffix(".svg").stat().st_size > 0 and path.with_suffix(".csv").stat().st_size > 0
