"""Many idle unikernel workers beside proxied traffic: issue 14's "100 idle echo workers" goal.

The gateway (one worker process, pinned to CPU 0 like the main bench) runs alternately alone and with a
pool of N echo instances (default 100, the most one pool may have), always with the same proxied route
to a backend nginx. With the pool it prints, each figure against its goal:
  ready       gateway start -> every instance ready (the worker's status file)
  answering   3N requests to the unikernel route (round robin): instances that served them (goal: all N)
  idle CPU    the N QEMUs' CPU over an idle window, per instance (goal < 0.5 %)
  memory      PSS per instance: its private pages plus its share of QEMU's binary and libraries, which
              every worker maps (goal < 24 MiB); RSS and the anonymous part for reference
  proxied     wrk on the proxied route: req/s with the pool / alone (goal >= 0.9x), and CPU per request
Rounds alternate (alone, with the pool, alone, ...): the ratio compares runs minutes apart, not hours.

Run: .venv/bin/python -m bench.idle_workers [--instances N] [--duration S] [--rounds R]
       [--transport socketpair|tap] [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

from bench import backends, procs, wrk
from bench.systems import REPO
from bench.unikernel_boot import pss_mib, qemu_pids
from bench.unikernel_metrics import memory_kib

GOALS = {"idle_cpu": 0.5, "pss": 24.0, "ratio": 0.9}
PROXY_CPU, CLIENT_CPU = "0", "1"


def gateway_config(port, backend_port, instances, transport):
    """The proxied route, plus the echo pool when instances > 0; nothing logged per request."""
    pool = (f"unikernel echo {{ image echo; instances {instances} {instances}; transport {transport}; "
            "setting boot_timeout 60s; }") if instances else ""
    route = "location /uk/ { unikernel_pass echo; }" if instances else ""
    return f"""
worker_processes 1;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
    {pool}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        {route}
    }}
}}
"""


def pool_instances(workdir):
    """The echo pool's instances, from the worker's status file."""
    for path in glob.glob(os.path.join(workdir, "logs", "unikernel", "status.*.json")):
        try:
            with open(path) as fh:
                return json.load(fh)["pools"]["echo"]["instances"]
        except (OSError, ValueError, KeyError):
            continue
    return []


def wait_until(predicate, limit, what):
    """Seconds until predicate() holds; RuntimeError after limit seconds."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise RuntimeError(f"{what}: not within {limit:g} s")


def proxied_load(port, args, workdir):
    """One wrk run on the proxied route: (req/s, non-2xx + socket errors)."""
    load = wrk.Load(path="/small", connections=args.connections)
    argv = procs.pinned(wrk.command(load, port, args.duration, wrk.write_script(load, workdir), None),
                        CLIENT_CPU)
    result = wrk.run(argv, args.duration)
    return result, result.non2xx + result.socket_errors


def answering(port, count, workdir):
    """(instances that served the 3N requests sent now, requests not answered right)."""
    before = {i["name"]: i["served"] for i in pool_instances(workdir)}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    failed = 0
    for n in range(3 * count):
        conn.request("GET", f"/uk/{n}")
        resp = conn.getresponse()
        failed += resp.read() != f"/{n}".encode() or resp.status != 200
    conn.close()
    served = {}

    def counted():
        served.update({i["name"]: i["served"] - before.get(i["name"], 0) for i in pool_instances(workdir)})
        return sum(served.values()) >= 3 * count
    wait_until(counted, 5, "the served counts written")
    return sum(1 for v in served.values() if v > 0), failed


def one_round(args, workdir, backend_port, instances):
    """Start the gateway, measure, stop it: a dict of figures."""
    os.makedirs(workdir)
    port = procs.free_port()
    conf = os.path.join(workdir, "gateway.conf")
    with open(conf, "w") as fh:
        fh.write(gateway_config(port, backend_port, instances, args.transport))
    t0 = time.perf_counter()
    gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", workdir, "-c", conf,
                                      "-g", "daemon off;"], PROXY_CPU, workdir, cwd=REPO)
    figures = {"instances": instances}
    try:
        procs.wait_port(gateway, port, timeout=120)
        if instances:
            ready = lambda: sum(i["state"] == "ready" for i in pool_instances(workdir)) == instances  # noqa: E731
            wait_until(ready, 120, f"{instances} instances ready")
            figures["ready_s"] = time.perf_counter() - t0
            figures["answering"], figures["failed"] = answering(port, instances, workdir)
            time.sleep(1.0)     # the answers' aftermath settles before the idle window
            pids = qemu_pids(gateway.pid)
            tree0, qemu0, w0 = procs.cpu_seconds(gateway.pid), sum(procs.cpu_seconds(p) for p in pids), \
                time.monotonic()
            time.sleep(args.idle_seconds)
            wall = time.monotonic() - w0
            qemu_used = sum(procs.cpu_seconds(p) for p in pids) - qemu0
            figures["idle_cpu_pct"] = qemu_used / wall / len(pids) * 100
            figures["gateway_idle_cpu_pct"] = (procs.cpu_seconds(gateway.pid) - tree0 - qemu_used) / wall * 100
            figures["pss_mib"] = statistics.mean(pss_mib(p) for p in pids)
            mems = [memory_kib(p) for p in pids]
            figures["rss_mib"] = statistics.mean(m["VmRSS"] for m in mems) / 1024
            figures["anon_mib"] = statistics.mean(m["RssAnon"] for m in mems) / 1024
        cpu0 = procs.cpu_seconds(gateway.pid)
        result, errors = proxied_load(port, args, workdir)
        figures["rps"] = result.rps
        figures["errors"] = errors
        figures["cpu_us_per_req"] = (procs.cpu_seconds(gateway.pid) - cpu0) * 1e6 / max(1, result.requests)
        figures["p99_ms"] = result.p99_ms
    finally:
        procs.stop(gateway)
    return figures


def main(argv=None):
    """Alternate rounds alone / with the pool; print every figure against its goal."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--transport", default="socketpair", choices=("socketpair", "tap"))
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    alone, pooled = [], []
    with tempfile.TemporaryDirectory(prefix="bench-idle-workers-") as tmp:
        backend_port = procs.free_port()
        backend, _ = backends.start("nginx", [backend_port], os.path.join(tmp, "backend"), CLIENT_CPU)
        try:
            procs.wait_port(backend, backend_port)
            for r in range(args.rounds):
                alone.append(one_round(args, os.path.join(tmp, f"alone{r}"), backend_port, 0))
                pooled.append(one_round(args, os.path.join(tmp, f"pool{r}"), backend_port, args.instances))
                print(f"round {r + 1}: alone {alone[-1]['rps']:.0f} req/s, with {args.instances} workers "
                      f"{pooled[-1]['rps']:.0f} req/s", flush=True)
        finally:
            procs.stop(backend)

    def med(rows, key):
        return statistics.median(row[key] for row in rows)

    ratio = med(pooled, "rps") / med(alone, "rps")
    n = args.instances
    rows = [
        ("gateway start to all instances ready", f"{med(pooled, 'ready_s'):.1f} s", "", ""),
        ("instances that answered 3N round-robin requests", f"{min(p['answering'] for p in pooled)} of {n}",
         f"all {n}", "met" if all(p["answering"] == n and not p["failed"] for p in pooled) else "missed"),
        ("idle CPU per instance", f"{med(pooled, 'idle_cpu_pct'):.2f} %", f"< {GOALS['idle_cpu']} %",
         "met" if med(pooled, "idle_cpu_pct") < GOALS["idle_cpu"] else "missed"),
        ("gateway worker's CPU while the pool idles (health pings)", f"{med(pooled, 'gateway_idle_cpu_pct'):.1f} %",
         "", ""),
        ("memory per instance (PSS)", f"{med(pooled, 'pss_mib'):.1f} MiB", f"< {GOALS['pss']:g} MiB",
         "met" if med(pooled, "pss_mib") < GOALS["pss"] else "missed"),
        ("  RSS / of which anonymous", f"{med(pooled, 'rss_mib'):.1f} / {med(pooled, 'anon_mib'):.1f} MiB", "", ""),
        ("proxied req/s with the pool / alone", f"{ratio:.2f}x ({med(pooled, 'rps'):.0f} / {med(alone, 'rps'):.0f})",
         f"≥ {GOALS['ratio']}x", "met" if ratio >= GOALS["ratio"] else "missed"),
        ("proxied CPU µs/request with the pool / alone",
         f"{med(pooled, 'cpu_us_per_req'):.1f} / {med(alone, 'cpu_us_per_req'):.1f}", "", ""),
        ("proxied p99 with the pool / alone", f"{med(pooled, 'p99_ms'):.2f} / {med(alone, 'p99_ms'):.2f} ms", "", ""),
        ("failed requests (all rounds)", str(sum(r["errors"] for r in alone + pooled)
                                             + sum(p["failed"] for p in pooled)), "0", ""),
    ]
    print(f"\n{n} idle echo workers ({args.transport}), {args.rounds} rounds, wrk -c{args.connections} "
          f"{args.duration:g}s; load average before/after {load0} / {os.getloadavg()}\n")
    print("| figure | measured | goal | |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
