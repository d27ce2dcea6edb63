"""Boot and start times of unikernel workers, each printed against its issue-14 goal.

  worker boot        QEMU spawned -> the guest answers a ping (tests' Worker harness, no gateway)
  gateway start      `python -m gateway` started -> first 200 from a unikernel route
  kill -9, spare     SIGKILL of the serving QEMU -> the route answers 200 again (`spares 1`: the spare
                     takes over)
  kill -9, restart   SIGKILL of both QEMUs (serving and spare) -> the route answers 200 again (a
                     replacement booted)
  idle worker        QEMU CPU over an idle window, and its RSS (all / private)

Routes are polled every millisecond over fresh connections. The gateway's bytecode is compiled first (as
`make` and `pip install` do), so a start measures the gateway, not CPython compiling its source;
--no-bytecode measures a fresh checkout's cold start instead (the cache removed, none written). Run:
  .venv/bin/python -m bench.unikernel_boot [--repeats N] [--transport tap|socketpair] [--idle-seconds S]
                                           [--no-bytecode]
"""

from __future__ import annotations

import argparse
import compileall
import glob
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

from bench import procs
from bench.systems import REPO
from bench.unikernel_metrics import cpu_seconds, measure_boot, measure_process_floor, memory_kib

GOALS = {"boot": 25.0, "start": 60.0, "kill": 30.0, "idle_cpu": 0.5, "rss": 24.0}
# The route's pool runs one instance and one spare (README "spares").
POOL = "unikernel echo { image echo; instances 1 1; spares 1; transport %s; setting crash_window 1s; }"


def gateway_config(port, transport):
    """One worker, one echo instance, nothing logged per request."""
    return f"""
worker_processes 1;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {POOL % transport}
    server {{
        listen 127.0.0.1:{port};
        location / {{ unikernel_pass echo; }}
    }}
}}
"""


def answers(port):
    """True when GET / on the gateway answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/boot")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_answer(port, since, limit=30.0):
    """Milliseconds from since (perf_counter) until the route answers 200."""
    while time.perf_counter() - since < limit:
        if answers(port):
            return (time.perf_counter() - since) * 1000
        time.sleep(0.001)
    raise RuntimeError(f"no answer within {limit:g} s")


def pool_states(workdir):
    """{state: [pid, ...]} of the echo pool's instances, from the worker's status file."""
    found = {}
    for path in glob.glob(os.path.join(workdir, "logs", "unikernel", "status.*.json")):
        try:
            with open(path) as fh:
                for inst in json.load(fh)["pools"]["echo"]["instances"]:
                    found.setdefault(inst["state"], []).append(inst["pid"])
        except (OSError, ValueError, KeyError):
            continue        # being replaced: read it again
    return found


def wait_standing_by(workdir, limit=30.0):
    """Until one instance serves and one stands by; (serving pid, spare pid)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        states = pool_states(workdir)
        if len(states.get("ready", ())) == 1 and len(states.get("spare", ())) == 1:
            return states["ready"][0], states["spare"][0]
        time.sleep(0.005)
    raise RuntimeError(f"no spare standing by within {limit:g} s")


def qemu_pids(root):
    """The QEMU processes in root's process tree."""
    found = []
    for pid in procs.tree_pids(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"qemu-system" in fh.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def pss_mib(pid):
    """Proportional set size in MiB: private pages plus this process's share of pages shared with others
    (QEMU's binary and libraries, shared by every worker on the host)."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def set_bytecode(present):
    """Write the gateway's bytecode cache (even under PYTHONDONTWRITEBYTECODE=1), as an install does; or
    remove it, as in a fresh checkout."""
    for package in ("gateway", "_fastpath"):
        root = os.path.join(REPO, package)
        if present:
            compileall.compile_dir(root, quiet=2)
            continue
        for folder, dirs, _ in os.walk(root):
            if "__pycache__" in dirs:
                dirs.remove("__pycache__")
                shutil.rmtree(os.path.join(folder, "__pycache__"))


def gateway_round(workdir, transport, idle_seconds, env=None):
    """(start ms, kill ms with a spare, kill ms without, idle CPU %, RSS MiB, private MiB, PSS MiB) for one
    fresh gateway."""
    os.makedirs(workdir)
    port = procs.free_port()
    conf = os.path.join(workdir, "gateway.conf")
    with open(conf, "w") as fh:
        fh.write(gateway_config(port, transport))
    t0 = time.perf_counter()
    proc = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", workdir, "-c", conf, "-g", "daemon off;"],
                       None, workdir, env=env, cwd=REPO)
    try:
        start_ms = wait_answer(port, t0)
        idle = rss = anon = pss = None
        if idle_seconds:
            time.sleep(0.5)
            pid = qemu_pids(proc.pid)[0]
            c0, w0 = cpu_seconds(pid), time.monotonic()
            time.sleep(idle_seconds)
            idle = (cpu_seconds(pid) - c0) / (time.monotonic() - w0) * 100
            mem = memory_kib(pid)
            rss, anon = mem["VmRSS"] / 1024, mem["RssAnon"] / 1024
            pss = pss_mib(pid)
        serving, _ = wait_standing_by(workdir)
        t1 = time.perf_counter()
        os.kill(serving, signal.SIGKILL)
        spare_ms = wait_answer(port, t1)
        time.sleep(0.2)      # past the spare's first requests
        victims = wait_standing_by(workdir)
        t2 = time.perf_counter()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        restart_ms = wait_answer(port, t2)
    finally:
        procs.stop(proc)
    return start_ms, spare_ms, restart_ms, idle, rss, anon, pss


def main(argv=None):
    """Print every figure against its goal as a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--transport", default="tap", choices=("tap", "socketpair"))
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--no-bytecode", action="store_true", help="start the gateway without a bytecode cache")
    args = ap.parse_args(argv)
    set_bytecode(not args.no_bytecode)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"} if args.no_bytecode else None
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-uk-boot-") as tmp:
        boot_med, boot_min, boot_max = measure_boot(tmp, args.repeats)
        floor = measure_process_floor(args.repeats)
        rounds = [gateway_round(os.path.join(tmp, f"gw{i}"), args.transport, args.idle_seconds if i == 0 else 0,
                                env)
                  for i in range(args.repeats)]
    starts = [r[0] for r in rounds]
    kills = [r[1] for r in rounds]
    restarts = [r[2] for r in rounds]
    _, _, _, idle, rss, anon, pss = rounds[0]

    def row(name, value, goal, unit, smaller=True):
        ok = value <= goal if smaller else value >= goal
        print(f"| {name} | {value:.1f} {unit} | {'≤' if smaller else '≥'} {goal:g} {unit} | {'met' if ok else 'missed'} |")

    print(f"load average before/after: {load0} / {os.getloadavg()}; transport {args.transport}; "
          f"{args.repeats} repeats (medians; min-max in brackets below); "
          f"{'no bytecode cache' if args.no_bytecode else 'bytecode compiled'}\n")
    print("| figure | measured | goal | |\n| --- | --- | --- | --- |")
    row("worker boot to first answer (QEMU start included)", boot_med, GOALS["boot"], "ms")
    row("gateway start to first unikernel answer", statistics.median(starts), GOALS["start"], "ms")
    row("kill -9 to the route answering again, a spare standing by", statistics.median(kills), GOALS["kill"], "ms")
    print(f"| kill -9 of both instances to a restarted one answering (the path without a spare) | "
          f"{statistics.median(restarts):.1f} ms | | |")
    row("idle worker CPU", idle, GOALS["idle_cpu"], "%")
    row("idle worker RSS (all)", rss, GOALS["rss"], "MiB")
    print(f"| idle worker RSS, private part (RssAnon) | {anon:.1f} MiB | | |")
    print(f"| idle worker PSS (private + its share of pages shared with the host's other QEMUs) | {pss:.1f} MiB | | |")
    print(f"| for scale: `qemu-system-x86_64 -version` | {floor:.1f} ms | | |")
    print(f"\nworker boot {boot_min:.1f}-{boot_max:.1f} ms; gateway start {min(starts):.0f}-{max(starts):.0f} ms; "
          f"kill -9 with a spare {min(kills):.0f}-{max(kills):.0f} ms, without {min(restarts):.0f}-{max(restarts):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
