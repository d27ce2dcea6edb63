"""Soak: wrk -c1000 for minutes on a proxied and a unikernel route; memory and descriptors must stay flat.

Issue 16 item 2. One gateway (one worker process, pinned to CPU 0 with its QEMU child) serves
  GET /small    proxied to the backend nginx (keep-alive upstream)
  GET /uk/soak  the echo unikernel (one instance; tap transport when the gateway may create taps)
while two wrk processes on CPU 1 (with the backend) keep 90 % and 10 % of the connections busy on them.
One worker process because this machine has two cores: the worker and QEMU get one, the load the
other (a second worker would fight wrk for its core), and every connection, and so any leak, lands
in one process whose line on the chart shows it undiluted.
Every few seconds it samples RSS and PSS (/proc/PID/status, smaps_rollup) and open descriptors
(/proc/PID/fd) of the master, the worker and each QEMU. Goals, each printed PASS or FAIL:
  errors        wrk socket errors and non-2xx answers: 0 on both routes
  memory / fds  per process kind, the median of the last window against the median of the first
                window after warm-up (windows: a minute, or a quarter of the post-warm-up time if
                shorter): growth under 5 %
  fds after     once the load stops, every process's descriptors are back to the count before it
Writes bench/results/<time>-soak.{csv,svg,md,json}; exits 1 when a goal fails.

Run: .venv/bin/python -m bench.soak [--duration S] [--connections N] [--sample-every S] [--warmup S] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench import backends, procs, wrk
from bench.idle_workers import wait_until
from bench.systems import REPO
from bench.unikernel_routes import status

GOAL_PCT = 5.0
PROXY_CPU, CLIENT_CPU = "0", "1"
KINDS = ("master", "worker", "qemu")
ROUTES = {"proxied": "/small", "unikernel": "/uk/soak"}
UNIKERNEL_SHARE = 0.1       # of the connections; TCG's echo answers fewer requests per second
UPSTREAM_IDLE = 10.0        # upstream keepalive_timeout: long enough not to close any under load (2 s dipped 6 %)
RESULTS = os.path.join(REPO, "bench", "results")


def gateway_config(port, backend_port, keepalive):
    """One worker: the proxied route and the echo pool; nothing logged per request.

    ``keepalive`` is the proxied route's client count: upstream connections are then kept, not
    churned by a small idle cache (with 64 the worker's descriptors swung 300-400 at 200 clients,
    hiding any leak). keepalive_requests is raised as in the main bench: at 1,000 the upstream
    connections, all opened in the first second, reached it together and the count dipped by up
    to 20 % every 26 s.
    """
    # 1,000 clients plus up to as many upstream connections while requests wait on the backend.
    return f"""
worker_processes 1;
worker_rlimit_nofile 8192;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive {keepalive};
        keepalive_requests 1000000; keepalive_timeout {UPSTREAM_IDLE:g}s; }}
    unikernel echo {{ image echo; instances 1 1; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location /uk/ {{ unikernel_pass echo; }}
    }}
}}
"""


# Sampling ---------------------------------------------------------------------------------------

def kinds(master):
    """{pid: kind} for the gateway's process tree."""
    found = {}
    for pid in procs.tree_pids(master):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        found[pid] = "master" if pid == master else "qemu" if b"qemu-system" in cmdline else "worker"
    return found


def reading(pid):
    """(RSS KiB, PSS KiB, open descriptors) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            pss = next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        return rss, pss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None


def sample(master, t, phase):
    """One row per live process of the gateway's tree."""
    rows = []
    for pid, kind in kinds(master).items():
        got = reading(pid)
        if got:
            rows.append({"t": round(t, 2), "phase": phase, "kind": kind, "pid": pid,
                         "rss_kib": got[0], "pss_kib": got[1], "fds": got[2]})
    return rows


def series(rows, kind, field):
    """[(t, sum of field over the kind's processes)] in time order."""
    totals = {}
    for row in rows:
        if row["kind"] == kind:
            totals[row["t"]] = totals.get(row["t"], 0) + row[field]
    return sorted(totals.items())


def growth(points, start, end, window):
    """(first, last, %): medians of the first and last window of [start, end] and the growth between."""
    first = statistics.median(v for t, v in points if start <= t <= start + window)
    last = statistics.median(v for t, v in points if end - window <= t <= end)
    return first, last, (last - first) / first * 100 if first else 0.0


def descriptors(master):
    """{pid: open descriptors} of the gateway's processes now."""
    return {pid: got[2] for pid in kinds(master) if (got := reading(pid))}


# The chart: a self-contained SVG, one panel per measure, one line per process kind -------------

COLOURS = {"master": "#1f77b4", "worker": "#d62728", "qemu": "#2ca02c"}


def nice_step(top):
    """The smallest of 1, 2, 2.5, 5 x 10^n whose five steps reach top: round axis labels."""
    unit = 10 ** math.floor(math.log10(top / 5))
    return next(m * unit for m in (1, 2, 2.5, 5, 10) if 5 * m * unit >= top)


def svg_chart(panels, marks, title, width=900, panel_h=260):
    """SVG text: panels are (label, {kind: [(t, v)]}); marks are (t, label) drawn as dashed lines."""
    left, right, top, gap = 70, 110, 40, 60
    height = top + len(panels) * (panel_h + gap)
    all_t = [t for _, lines in panels for pts in lines.values() for t, _ in pts]
    t0, t1 = min(all_t), max(all_t)
    plot_w = width - left - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15">{title}</text>']
    x = lambda t: left + (t - t0) / ((t1 - t0) or 1) * plot_w   # noqa: E731
    for n, (label, lines) in enumerate(panels):
        y_top = top + n * (panel_h + gap) + 10
        values = [v for pts in lines.values() for _, v in pts]
        step = nice_step(max(values) or 1)
        hi = step * 5      # from zero, so a flat line looks flat and growth reads true
        y = lambda v: y_top + panel_h - v / hi * panel_h   # noqa: E731
        out.append(f'<rect x="{left}" y="{y_top}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>')
        out.append(f'<text x="{left}" y="{y_top - 4}">{label}</text>')
        for i in range(6):
            v, tx = step * i, t0 + (t1 - t0) * i / 5
            out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
            out.append(f'<text x="{x(tx):.1f}" y="{y_top + panel_h + 16}" text-anchor="middle">{tx:.0f} s</text>')
        for t, mark in marks:
            out.append(f'<line x1="{x(t):.1f}" y1="{y_top}" x2="{x(t):.1f}" y2="{y_top + panel_h}" '
                       f'stroke="#777" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{x(t) + 3:.1f}" y="{y_top + panel_h - 4}" fill="#555">{mark}</text>')
        for k, (kind, pts) in enumerate(lines.items()):
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS.get(kind, "#000")}" stroke-width="1.5"/>')
            out.append(f'<text x="{width - right + 10}" y="{y_top + 16 + 16 * k}" '
                       f'fill="{COLOURS.get(kind, "#000")}">{kind}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# The run ----------------------------------------------------------------------------------------

def answers(port, path):
    """The status of one GET on a fresh connection that the gateway closes after it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def finished(client):
    """A wrk child's parsed result, or why there is none."""
    out, err = client.communicate()
    if client.returncode != 0:
        return "wrk failed: " + (err.strip() or out.strip() or f"exit {client.returncode}").splitlines()[0]
    try:
        return wrk.parse(out)
    except ValueError as exc:
        return str(exc)


def settle(master, baseline, limit):
    """Descriptors per pid once each is back to its baseline count, or as they are after limit seconds."""
    deadline = time.monotonic() + limit
    while True:
        now = descriptors(master)
        if all(now.get(pid, 0) <= count for pid, count in baseline.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def soak(args, workdir):
    """Start everything, load and sample, stop everything: the record of the run."""
    backend_port, port = procs.free_port(), procs.free_port()
    uk = max(1, round(args.connections * UNIKERNEL_SHARE))
    loads = {"proxied": args.connections - uk, "unikernel": uk}
    record = {"load_average_before": os.getloadavg()}
    backend, _ = backends.start("nginx", [backend_port], os.path.join(workdir, "backend"), CLIENT_CPU)
    gateway, clients = None, {}
    try:
        gw_dir = os.path.join(workdir, "gateway")
        os.makedirs(gw_dir)
        conf = os.path.join(gw_dir, "gateway.conf")
        with open(conf, "w") as fh:
            fh.write(gateway_config(port, backend_port, loads["proxied"]))
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", gw_dir, "-c", conf,
                                          "-g", "daemon off;"], PROXY_CPU, workdir, cwd=REPO)
        procs.wait_port(gateway, port, timeout=60)
        wait_until(lambda: any(i["state"] == "ready" for i in status(gw_dir).get("echo", {}).get("instances", [])),
                   60, "the echo instance ready")
        for path in ROUTES.values():
            if answers(port, path) != 200:
                raise RuntimeError(f"GET {path} did not answer 200 before the load")
        time.sleep(UPSTREAM_IDLE + 1)   # the check's upstream connection closes: the idle count
        pool = status(gw_dir)["echo"]
        record["transport"] = pool["transport"]
        qemu_before = {i["pid"] for i in pool["instances"]}
        master = gateway.pid
        record["fds_before"] = descriptors(master)

        argvs = {}
        for route, conns in loads.items():
            load = wrk.Load(path=ROUTES[route], connections=conns)
            argvs[route] = wrk.command(load, port, args.duration, wrk.write_script(load, workdir), CLIENT_CPU)
        commands = {route: " ".join(argv) for route, argv in argvs.items()}
        rows = sample(master, -1.0, "idle")
        t_start = time.monotonic()
        for route in loads:
            # Popen, not wrk.run in threads: an interrupted soak must be able to stop its clients.
            clients[route] = subprocess.Popen(argvs[route], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, preexec_fn=procs.raise_nofile)
        tick = 0
        while any(client.poll() is None for client in clients.values()):
            t = time.monotonic() - t_start
            rows += sample(master, t, "warm-up" if t < args.warmup else "load")
            tick += 1
            time.sleep(max(0.0, t_start + tick * args.sample_every - time.monotonic()))
        results = {route: finished(client) for route, client in clients.items()}
        record["load_end_s"] = round(time.monotonic() - t_start, 2)
        # Past the upstream keepalive_timeout and the clients' closes: the count must be back.
        record["fds_after"] = settle(master, record["fds_before"], 10 + UPSTREAM_IDLE)
        rows += sample(master, time.monotonic() - t_start, "after")
        record["qemu_restarted"] = {i["pid"] for i in status(gw_dir)["echo"]["instances"]} != qemu_before
        with open(os.path.join(gw_dir, "error.log"), errors="replace") as fh:
            record["error_log_errors"] = sum(any(m in line for m in ("[error]", "[crit]", "[alert]", "[emerg]"))
                                             for line in fh)
    finally:
        for client in clients.values():
            if client.poll() is None:
                client.kill()
                client.wait()
        if gateway:
            procs.stop(gateway)
        procs.stop(backend)
    record.update(rows=rows, loads=loads, commands=commands, kinds={r["pid"]: r["kind"] for r in rows},
                  wrk={route: r.to_dict() if isinstance(r, wrk.Result) else {"failed": r}
                       for route, r in results.items()},
                  load_average_after=os.getloadavg())
    return record


def judge(record, args):
    """Figures and PASS/FAIL goals from the samples: adds "growth", "goals" to the record."""
    rows = record["rows"]
    end = record["load_end_s"]
    window = min(60.0, (end - args.warmup) / 4)
    record["window_s"] = window
    record["growth"] = {}
    for kind in KINDS:
        for field in ("rss_kib", "pss_kib", "fds"):
            points = [(t, v) for t, v in series(rows, kind, field) if args.warmup <= t <= end]
            if points:
                record["growth"][f"{kind} {field}"] = growth(points, args.warmup, end, window)
    errors = sum(r.get("socket_errors", 1) + r.get("non2xx", 0) for r in record["wrk"].values())
    requests = {route: r.get("requests", 0) for route, r in record["wrk"].items()}
    goals = [(f"no errors: wrk socket errors + non-2xx = {errors}, requests "
              + ", ".join(f"{route} {n:,}" for route, n in requests.items()),
              errors == 0 and all(requests.values()) and len(requests) == len(ROUTES))]
    for name, (first, last, pct) in record["growth"].items():
        if not name.endswith("pss_kib"):
            goals.append((f"{name.replace('_kib', '')} growth {pct:+.1f} % (< {GOAL_PCT:g} %)", pct < GOAL_PCT))
    before, after = record["fds_before"], record["fds_after"]
    back = all(after.get(pid, 0) <= n for pid, n in before.items())
    goals.append(("descriptors back after the load: " + ", ".join(
        f"{record['kinds'].get(pid, '?')} {n} -> {after.get(pid, 'gone')}" for pid, n in before.items()), back))
    record["goals"] = goals
    return all(ok for _, ok in goals)


def write(record, args, out, stamp):
    """The CSV of samples, the SVG chart, the JSON record and the Markdown summary: their paths."""
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"{stamp}-soak")
    rows = record["rows"]
    with open(base + ".csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    kinds_seen = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    panels = [("RSS (MiB)", {k: [(t, v / 1024) for t, v in series(rows, k, "rss_kib")] for k in kinds_seen}),
              ("open descriptors", {k: series(rows, k, "fds") for k in kinds_seen})]
    marks = [(args.warmup, "warm-up end"), (record["load_end_s"], "load end")]
    with open(base + ".svg", "w") as fh:
        fh.write(svg_chart(panels, marks, f"Soak {stamp}: wrk -c{args.connections} for {args.duration:g} s"))
    with open(base + ".json", "w") as fh:
        json.dump({k: v for k, v in record.items() if k != "rows"}, fh, indent=1, default=str)
    lines = [f"# Soak, {stamp} (issue 16 item 2)", "",
             f"`{record['command']}`; load average before {fmt_load(record['load_average_before'])}, "
             f"after {fmt_load(record['load_average_after'])}; gateway one worker on CPU {PROXY_CPU} with its "
             f"QEMU ({record.get('transport', '?')} transport), wrk and the backend nginx on CPU {CLIENT_CPU}.", "",
             "| route | wrk | requests | req/s | p99 ms | socket errors | non-2xx |", "|---|---|---|---|---|---|---|"]
    for route, r in record["wrk"].items():
        if "failed" in r:
            lines.append(f"| {route} | `{record['commands'][route]}` | {r['failed']} | | | | |")
        else:
            lines.append(f"| {route} | `{record['commands'][route]}` | {r['requests']:,} | {r['rps']:,.0f} | "
                         f"{r['p99_ms']:.1f} | {r['socket_errors']} | {r['non2xx']} |")
    lines += ["", f"Growth: median of the samples (every {args.sample_every:g} s) in the first {record['window_s']:.0f} s "
              f"after the {args.warmup:g} s warm-up against the median of the last {record['window_s']:.0f} s of "
              "the load; values summed over the processes of a kind. Goals are on RSS: PSS also moves "
              "when other processes sharing the same pages (other QEMUs on the host) start or stop.", "",
              "| process | measure | first window | last window | growth |", "|---|---|---|---|---|"]
    for name, (first, last, pct) in record["growth"].items():
        kind, field = name.split()
        scale, unit = (1024, "MiB") if field.endswith("kib") else (1, "")
        lines.append(f"| {kind} | {field.replace('_kib', '')} | {first / scale:.1f} {unit} | "
                     f"{last / scale:.1f} {unit} | {pct:+.2f} % |")
    lines += ["", f"QEMU restarted during the run: {'yes' if record['qemu_restarted'] else 'no'}; "
              f"error-log lines at [error] or worse: {record['error_log_errors']}.", "",
              f"Chart: [{stamp}-soak.svg]({stamp}-soak.svg); samples: [{stamp}-soak.csv]({stamp}-soak.csv)", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in record["goals"]]
    with open(base + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return {ext: base + "." + ext for ext in ("csv", "svg", "json", "md")}


def fmt_load(load):
    return " ".join(f"{v:.2f}" for v in load)


def main(argv=None):
    """Run the soak, write its files, print the summary; 1 when a goal fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, help="seconds of load before growth counts (default: "
                    "a minute, or a quarter of the duration if shorter)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 4)
    if args.duration - args.warmup < 4 * args.sample_every:
        ap.error("the load after warm-up must span at least four samples")
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    # A stopped soak still stops what it started (gateway, QEMU, backend, wrk) on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        record = soak(args, tmp)
    record["command"] = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    record["stamp"] = stamp
    ok = judge(record, args)
    paths = write(record, args, args.out, stamp)
    with open(paths["md"]) as fh:
        print(fh.read(), end="")
    print(f"\nwritten: {', '.join(paths.values())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
