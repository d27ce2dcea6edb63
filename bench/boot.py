"""The ``uk-boot`` scenario: how long until a unikernel route answers after start and after a worker is killed."""

from __future__ import annotations

import os
import signal
import statistics
import time
import urllib.request

from bench import procs
from bench.systems import SYSTEMS, Placement

POLL = 0.005


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/boot", timeout=15) as resp:
            resp.read()
            return resp.status == 200
    except OSError:
        return False


def _wait_answer(port: int, since: float, limit: float = 30.0) -> float:
    """Milliseconds from since until the route first answers 200; ValueError after limit."""
    while time.monotonic() - since < limit:
        if _answers(port):
            return (time.monotonic() - since) * 1000
        time.sleep(POLL)
    raise ValueError(f"no answer within {limit:g} s")


def qemu_pids(root: int) -> list[int]:
    """The QEMU processes in root's process tree."""
    found = []
    for pid in procs.tree_pids(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"qemu-system" in f.read().split(b"\0")[0]:
                    found.append(pid)
        except OSError:
            continue
    return found


def measure(where: Placement, workdir: str, repeats: int, log=print) -> dict:
    """Start the one-worker gateway with an echo unikernel route repeats times; each time time
    start -> first answer, then kill -9 its QEMU worker and time kill -> next answer."""
    system = SYSTEMS["gateway-unikernel"]
    starts, restarts, command = [], [], ""
    for i in range(repeats):
        port = procs.free_port()
        began = time.monotonic()
        proc, configs = system.start(os.path.join(workdir, f"boot{i}"), port,
                                     [procs.free_port()], where, "echo")
        command = " ".join(proc.argv)
        try:
            starts.append(_wait_answer(port, began))
            workers = qemu_pids(proc.pid)
            if not workers:
                raise ValueError("no QEMU process under the gateway")
            killed = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            restarts.append(_wait_answer(port, killed))
        finally:
            procs.stop(proc)
        log(f"[uk-boot] {i + 1}: first answer {starts[-1]:.0f} ms after start, "
            f"{restarts[-1]:.0f} ms after kill -9")
    return {"command": command, "configs": configs, "start_ms": starts, "restart_ms": restarts,
            "summary": {"start_ms": round(statistics.median(starts), 1),
                        "restart_ms": round(statistics.median(restarts), 1)}}
