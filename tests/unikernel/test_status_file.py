"""The worker's unikernel status file: JSON that readers load, written without leaving garbage behind."""

import gc
import json

from gateway.unikernel.service import UnikernelPools


class FakePool:
    """A pool as the status file sees it: one ready instance."""

    def snapshot(self):
        return {"transport": "tap", "accelerator": "tcg", "queued": 0, "min": 1, "max": 1,
                "instances": [{"name": "echo-0", "state": "ready", "pid": 4242, "restarts": 0,
                               "accelerator": "tcg", "last_exit": None, "in_flight": 0, "served": 7,
                               "malformed_replies": 0, "tap": "uk1p0i0", "console": "echo-0.console"}]}


def test_status_file_is_written_without_reference_cycles(tmp_path):
    # It is rewritten every second under load. The stdlib's json.dump built a cycle of closures per
    # call, which only the worker's deliberately rare young collections freed: half of the RSS
    # ramp bench/soak.py showed over its first eight minutes.
    pools = UnikernelPools({}, None, str(tmp_path))
    pools.status_path = str(tmp_path / "status.1.json")
    pools.pools = {"echo": FakePool()}
    gc.collect()
    gc.disable()
    try:
        pools.write_status()
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0
    state = json.loads((tmp_path / "status.1.json").read_text())
    assert state["pools"]["echo"]["instances"][0]["served"] == 7
