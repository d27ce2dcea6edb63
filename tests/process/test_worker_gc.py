"""The worker keeps the cyclic garbage collector off the request path."""

import subprocess
import sys

from gateway.process.worker import GC_YOUNG_THRESHOLD


def test_startup_objects_are_frozen_and_young_collections_wait():
    # In a child process: freezing the test runner's own heap would outlive this test.
    code = ("import gc\n"
            "from gateway.process.worker import tune_garbage_collector\n"
            "before = gc.get_threshold()\n"
            "tune_garbage_collector()\n"
            "print(gc.get_freeze_count(), *before, *gc.get_threshold())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    frozen, *thresholds = map(int, done.stdout.split())
    before, after = thresholds[:3], thresholds[3:]
    assert frozen > 1000                     # modules, functions, config: all frozen
    assert after[0] == max(before[0], GC_YOUNG_THRESHOLD)
    assert after[1:] == before[1:]
