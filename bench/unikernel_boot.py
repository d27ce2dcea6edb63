"""Boot and start times of unikernel workers, each printed against its issue-14 goal.

  worker boot        QEMU spawned -> the guest answers a ping (tests' Worker harness, no gateway)
  resume             a paused QEMU (-S, loaded; prestart.py) resumed with QMP cont -> the guest answers a
                     ping (same harness, alternating with the cold boots above)
  paused QEMU        its memory (PSS, private) and CPU while it waits
  gateway start      `python -m gateway` started -> first 200 from a unikernel route
  kill -9, spare     SIGKILL of the serving QEMU -> the route answers 200 again (`spares 1`: the spare
                     takes over)
  kill -9, restart   SIGKILL of both QEMUs (serving and spare) -> the route answers 200 again (a
                     replacement booted)
  idle worker        QEMU CPU over an idle window, and its RSS (all / private)
  kill -9, paused    SIGKILL of the only instance of a pool with `prestart 1` and no spare -> the route
                     answers again (the paused QEMU resumed); beside it, the same in a pool with `prestart 0`
                     (QEMU started cold), alternating in one gateway

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
from bench.unikernel_metrics import cpu_seconds, measure_process_floor, memory_kib
from tests.unikernel.harness import Worker

GOALS = {"boot": 25.0, "start": 60.0, "kill": 30.0, "idle_cpu": 0.5, "rss": 24.0}
# The route's pool runs one instance and one spare (README "spares"); no paused QEMU, so the kill
# figures of this pool read as they did before `prestart`.
POOL = ("unikernel echo { image echo; instances 1 1; spares 1; prestart 0; transport %s; "
        "setting crash_window 1s; }")
# Two pools of one instance and no spare: one with a paused QEMU standing by, one without.
PRESTART_POOLS = """
    unikernel warm {{ image echo; instances 1 1; prestart 1; transport {t}; setting crash_window 1s; }}
    unikernel cold {{ image echo; instances 1 1; prestart 0; transport {t}; setting crash_window 1s; }}"""


def gateway_config(port, transport, prestart=False):
    """One worker, the echo pool on / (or the warm and cold pools on /warm/ and /cold/), no access log."""
    if prestart:
        pools = PRESTART_POOLS.format(t=transport)
        locations = "location /warm/ { unikernel_pass warm; } location /cold/ { unikernel_pass cold; }"
    else:
        pools, locations = POOL % transport, "location / { unikernel_pass echo; }"
    return f"""
worker_processes 1;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {pools}
    server {{
        listen 127.0.0.1:{port};
        {locations}
    }}
}}
"""


def measure_boot_and_resume(log_dir, repeats):
    """(cold boot ms, resume ms, paused-loading ms) lists, alternating: QEMU spawned -> first pong; a paused
    QEMU (loaded and negotiated first) resumed -> first pong."""
    cold, resume, loading = [], [], []
    for _ in range(repeats):
        worker = Worker("echo", log_dir)
        try:
            t0 = time.perf_counter()
            worker.start()
            worker.wait_ready()
            cold.append((time.perf_counter() - t0) * 1000)
        finally:
            worker.stop()
        worker = Worker("echo", log_dir, paused=True)
        try:
            worker.start()
            loading.append(worker.wait_paused() * 1000)
            time.sleep(0.05)
            t0 = time.perf_counter()
            worker.resume()
            worker.wait_ready()
            resume.append((time.perf_counter() - t0) * 1000)
        finally:
            worker.stop()
    return cold, resume, loading


def measure_paused(log_dir, idle_seconds):
    """(PSS MiB, private MiB, RssAnon MiB, CPU %) of one paused QEMU after it has loaded."""
    worker = Worker("echo", log_dir, paused=True)
    try:
        worker.start()
        worker.wait_paused()
        time.sleep(0.5)
        pid = worker.proc.pid
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle_seconds)
        cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - w0) * 100
        rollup = smaps_rollup(pid)
        return (rollup["Pss"] / 1024, (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024,
                memory_kib(pid)["RssAnon"] / 1024, cpu)
    finally:
        worker.stop()


def smaps_rollup(pid):
    """/proc/PID/smaps_rollup's kB fields."""
    found = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                found[key] = int(value.split()[0])
    return found


def answers(port, path="/boot"):
    """True when GET path on the gateway answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_answer(port, since, limit=30.0, path="/boot"):
    """Milliseconds from since (perf_counter) until the route answers 200."""
    while time.perf_counter() - since < limit:
        if answers(port, path):
            return (time.perf_counter() - since) * 1000
        time.sleep(0.001)
    raise RuntimeError(f"no answer within {limit:g} s")


def pool_states(workdir, pool="echo"):
    """{state: [pid, ...]} of a pool's instances and paused QEMUs ("paused:<state>"), from the status file."""
    found = {}
    for path in glob.glob(os.path.join(workdir, "logs", "unikernel", "status.*.json")):
        try:
            with open(path) as fh:
                data = json.load(fh)["pools"][pool]
            for inst in data["instances"]:
                found.setdefault(inst["state"], []).append(inst["pid"])
            for paused in data["paused"]:
                found.setdefault("paused:" + paused["state"], []).append(paused["pid"])
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


def wait_serving(workdir, pool, paused, limit=30.0):
    """Until the pool's one instance serves and (if paused) its paused QEMU has loaded; the instance's pid."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        states = pool_states(workdir, pool)
        if len(states.get("ready", ())) == 1 and len(states.get("paused:paused", ())) == int(paused):
            return states["ready"][0]
        time.sleep(0.005)
    raise RuntimeError(f"{pool}: not serving with {int(paused)} paused QEMU within {limit:g} s")


def serving_pid(workdir, pool, limit=10.0):
    """The pid of the pool's one ready instance."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready = pool_states(workdir, pool).get("ready", ())
        if len(ready) == 1:
            return ready[0]
        time.sleep(0.005)
    raise RuntimeError(f"{pool}: no instance ready within {limit:g} s")


def prestart_round(workdir, transport):
    """(kill ms with a paused QEMU, kill ms without) for one gateway: kill -9 of the only instance of
    the warm pool (prestart 1), then of the cold pool's (prestart 0), each timed to its route's answer."""
    os.makedirs(workdir)
    port = procs.free_port()
    conf = os.path.join(workdir, "gateway.conf")
    with open(conf, "w") as fh:
        fh.write(gateway_config(port, transport, prestart=True))
    proc = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", workdir, "-c", conf, "-g", "daemon off;"],
                       None, workdir, cwd=REPO)
    figures = {}
    try:
        wait_answer(port, time.perf_counter(), path="/warm/x")
        for pool in ("warm", "cold"):
            victim = wait_serving(workdir, pool, pool == "warm")
            wait_serving(workdir, "warm", True)     # nothing boots in the background
            paused = pool_states(workdir, "warm")["paused:paused"][0]
            time.sleep(0.1)
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            figures[pool] = wait_answer(port, t0, path=f"/{pool}/x")
            if pool == "warm" and serving_pid(workdir, "warm") != paused:
                raise RuntimeError("the warm pool's instance is not the paused QEMU it had")
    finally:
        procs.stop(proc)
    return figures["warm"], figures["cold"]


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
        cold, resume, loading = measure_boot_and_resume(tmp, args.repeats)
        paused = measure_paused(tmp, args.idle_seconds or 1.0)
        floor = measure_process_floor(args.repeats)
        rounds = [gateway_round(os.path.join(tmp, f"gw{i}"), args.transport, args.idle_seconds if i == 0 else 0,
                                env)
                  for i in range(args.repeats)]
        warm_rounds = [prestart_round(os.path.join(tmp, f"pre{i}"), args.transport) for i in range(args.repeats)]
    boot_med, boot_min, boot_max = statistics.median(cold), min(cold), max(cold)
    warm_kills = [r[0] for r in warm_rounds]
    cold_kills = [r[1] for r in warm_rounds]
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
    row("paused QEMU resumed to first answer (`prestart`)", statistics.median(resume), GOALS["boot"], "ms")
    print(f"| paused QEMU: spawn to loaded (monitor negotiated) | {statistics.median(loading):.1f} ms | | |")
    row("kill -9, no spare, a paused QEMU ready: the route answering again", statistics.median(warm_kills),
        GOALS["kill"], "ms")
    print(f"| kill -9, no spare, no paused QEMU (`prestart 0`, same gateway) | {statistics.median(cold_kills):.1f} ms "
          f"| | |")
    # Measured with no other QEMU of ours running: PSS and the private pages then include QEMU's binary and
    # libraries, which every further QEMU shares; RssAnon is what each one costs on its own.
    print(f"| paused QEMU memory: RssAnon (its own) / PSS and private (the only QEMU here) | {paused[2]:.1f} / "
          f"{paused[0]:.1f} / {paused[1]:.1f} MiB | | |")
    print(f"| paused QEMU CPU while it waits | {paused[3]:.2f} % | | |")
    row("gateway start to first unikernel answer", statistics.median(starts), GOALS["start"], "ms")
    row("kill -9 to the route answering again, a spare standing by", statistics.median(kills), GOALS["kill"], "ms")
    print(f"| kill -9 of both instances to a restarted one answering (the path without a spare) | "
          f"{statistics.median(restarts):.1f} ms | | |")
    row("idle worker CPU", idle, GOALS["idle_cpu"], "%")
    row("idle worker RSS (all)", rss, GOALS["rss"], "MiB")
    print(f"| idle worker RSS, private part (RssAnon) | {anon:.1f} MiB | | |")
    print(f"| idle worker PSS (private + its share of pages shared with the host's other QEMUs) | {pss:.1f} MiB | | |")
    print(f"| for scale: `qemu-system-x86_64 -version` | {floor:.1f} ms | | |")
    print(f"\nworker boot {boot_min:.1f}-{boot_max:.1f} ms; resume {min(resume):.1f}-{max(resume):.1f} ms; "
          f"kill -9 with a paused QEMU {min(warm_kills):.0f}-{max(warm_kills):.0f} ms, cold "
          f"{min(cold_kills):.0f}-{max(cold_kills):.0f} ms; gateway start {min(starts):.0f}-{max(starts):.0f} ms; "
          f"kill -9 with a spare {min(kills):.0f}-{max(kills):.0f} ms, without {min(restarts):.0f}-{max(restarts):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
