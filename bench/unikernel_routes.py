"""Unikernel-served routes through the gateway, side by side with nginx and with a Python HTTP upstream.

Measures requests per second and host CPU per request (every process of the server's tree: gateway
master, worker and its QEMU children; nginx; or gateway plus the Python upstream) for:
  gw-return    GET /return              -> the gateway's own `return 200` (its HTTP path alone, a baseline)
  uk-echo      GET /echo/hello          -> echo unikernel
  uk-echo-sp   GET /echosp/hello        -> echo unikernel over a socketpair instead of a tap
  uk-kv        GET /kv/key1             -> kv unikernel (a stored 64-byte value)
  uk-static    GET /site/index.html     -> static unikernel
  nginx-static GET /index.html          -> nginx serving the same file from disk
  py-kv        GET /kv/key1             -> gateway proxying to a Python (uvloop) HTTP server doing the same lookup
and the time from kill -9 of a QEMU worker to its replacement answering a ping.

With --syscalls, system calls per request are counted too (perf stat's raw_syscalls:sys_enter tracepoint,
attached to the server's non-QEMU processes and to its QEMU processes separately): unlike CPU time they do
not move with what else the shared machine runs.

Run: .venv/bin/python -m bench.unikernel_routes [--duration S] [--connections N] [--kills N] [--syscalls]
       [--routes a,b,...]
Writes bench/results/<time>-unikernel-routes.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench import procs, wrk
from bench.systems import NGINX, REPO

SITE = os.path.join(REPO, "unikernels", "services", "static", "site")
VALUE = b"v" * 64
RESULTS = os.path.join(REPO, "bench", "results")


def gateway_config(port, upstream_port):
    """One worker, one instance per pool, nothing logged per request."""
    return f"""
worker_processes 1;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream pykv {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    unikernel echo {{ image echo; instances 1 1; setting crash_window 1s; }}
    unikernel echosp {{ image echo; instances 1 1; transport socketpair; }}
    unikernel kv {{ image kv; instances 1 1; balance hash $uri consistent; }}
    unikernel site {{ image static; instances 1 1; }}
    server {{
        listen 127.0.0.1:{port};
        location /echo/ {{ unikernel_pass echo; }}
        location /echosp/ {{ unikernel_pass echosp; }}
        location /kv/ {{ unikernel_pass kv; }}
        location /site/ {{ unikernel_pass site; }}
        location = /return {{ return 200 "hello"; }}
        location /py/ {{ proxy_pass http://pykv/; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
"""


def nginx_config(port):
    """nginx serving the static unikernel's site from disk, one worker like the gateway."""
    return f"""
worker_processes 1;
error_log stderr error;
pid nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    include /etc/nginx/mime.types;
    server {{ listen 127.0.0.1:{port}; root {SITE}; }}
}}
"""


# The Python upstream: a dict lookup per GET /kv/KEY, on uvloop with a bare Protocol. -------------

class KvProtocol(asyncio.Protocol):
    """Answers GET /kv/KEY from a dict; keep-alive, no pipelining beyond what the buffer holds."""

    store = {b"/kv/key1": VALUE}

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            value = self.store.get(target)
            if value is None:
                self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(value), value))


def serve_kv(port):
    """Run the Python kv upstream forever (a child process of the benchmark)."""
    import uvloop
    loop = uvloop.new_event_loop()
    server = loop.run_until_complete(loop.create_server(KvProtocol, "127.0.0.1", port))
    try:
        loop.run_forever()
    finally:
        server.close()


# Measuring --------------------------------------------------------------------------------------

def measure(name, root_pids, port, path, args, workdir):
    """One wrk run; rps and CPU microseconds per request over root_pids' process trees."""
    load = wrk.Load(path=path, connections=args.connections)
    script = wrk.write_script(load, workdir)
    argv = wrk.command(load, port, args.duration, script, None)
    counters = start_syscall_count(root_pids) if args.syscalls else []
    before = sum(procs.cpu_seconds(pid) for pid in root_pids)
    front_before = procs.cpu_seconds(root_pids[0])
    qemu_before = qemu_cpu(root_pids)
    result = wrk.run(argv, args.duration)
    used = sum(procs.cpu_seconds(pid) for pid in root_pids) - before
    qemu_used = qemu_cpu(root_pids) - qemu_before
    front_used = procs.cpu_seconds(root_pids[0]) - front_before - qemu_used
    calls = stop_syscall_count(counters)
    row = {"route": name, "rps": result.rps, "cpu_us_per_request": round(used / result.requests * 1e6, 1)
           if result.requests else None,
           "qemu_cpu_us_per_request": round(qemu_used / result.requests * 1e6, 1) if result.requests else None,
           "front_cpu_us_per_request": round(front_used / result.requests * 1e6, 1) if result.requests else None,
           "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
           "requests": result.requests, "non2xx": result.non2xx, "socket_errors": result.socket_errors}
    print(f"{name:13} {row['rps']:>9.0f} req/s  {row['cpu_us_per_request']:>7} us CPU/req "
          f"(QEMU {row['qemu_cpu_us_per_request']:>5}, front {row['front_cpu_us_per_request']:>5})  "
          f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  non-2xx {row['non2xx']}", flush=True)
    if calls and result.requests:
        row["syscalls_per_request"] = round(calls.get("host", 0) / result.requests, 2)
        row["qemu_syscalls_per_request"] = round(calls.get("qemu", 0) / result.requests, 2)
        print(f"{'':13} system calls per request: server {row['syscalls_per_request']}, "
              f"QEMU {row['qemu_syscalls_per_request']}", flush=True)
    return row


def start_syscall_count(root_pids):
    """perf stat counting system calls of the server's processes: [(kind, Popen)], kind host or qemu."""
    groups = {"host": [], "qemu": []}
    for root in root_pids:
        for pid in procs.tree_pids(root):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    kind = "qemu" if b"qemu-system" in fh.read() else "host"
            except OSError:
                continue
            groups[kind].append(str(pid))
    counters = []
    for kind, pids in groups.items():
        if pids:
            proc = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", ",".join(pids)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            counters.append((kind, proc))
    time.sleep(0.2)     # perf attaches before the load starts
    return counters


def stop_syscall_count(counters):
    """{kind: system calls} from the perf processes start_syscall_count started."""
    found = {}
    for kind, proc in counters:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and "raw_syscalls" in fields[2] and fields[0].isdigit():
                found[kind] = int(fields[0])
    return found


def qemu_cpu(root_pids):
    """CPU seconds of the QEMU processes in root_pids' trees (live ones: instances are not restarted here)."""
    total = 0.0
    for root in root_pids:
        for pid in procs.tree_pids(root):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"qemu-system" not in fh.read():
                        continue
            except OSError:
                continue
            total += procs.cpu_seconds(pid)
    return total


def status(workdir):
    """The gateway worker's per-instance state."""
    for path in glob.glob(os.path.join(workdir, "logs", "unikernel", "status.*.json")):
        with open(path) as fh:
            return json.load(fh)["pools"]
    return {}


def kill_to_answer(workdir, pool, count):
    """Seconds from kill -9 of the pool's first QEMU to its replacement answering a ping, `count` times."""
    times = []
    for _ in range(count):
        victim = status(workdir)[pool]["instances"][0]
        t0 = time.perf_counter()
        os.kill(victim["pid"], signal.SIGKILL)
        while True:
            inst = status(workdir)[pool]["instances"][0]
            if inst["state"] == "ready" and inst["pid"] != victim["pid"]:
                times.append(time.perf_counter() - t0)
                break
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("no replacement within 10 s")
            time.sleep(0.0005)
        time.sleep(1.2)     # past the 1 s crash window: every kill is a first exit, restarted at once
    return times


def get(url, data=None, method="GET"):
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=5) as resp:
        return resp.status, resp.read()


def main(argv=None):
    """Run every route, print a table, record JSON and Markdown under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--syscalls", action="store_true", help="count system calls per request (perf stat)")
    parser.add_argument("--routes", default="", help="only these routes (comma-separated names)")
    parser.add_argument("--serve-kv", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_kv:
        serve_kv(args.serve_kv)
        return 0
    workdir = tempfile.mkdtemp(prefix="bench-uk-routes-")
    gw_dir, ng_dir = os.path.join(workdir, "gateway"), os.path.join(workdir, "nginx")
    os.makedirs(gw_dir)
    os.makedirs(ng_dir)
    gw_port, ng_port, kv_port = procs.free_port(), procs.free_port(), procs.free_port()
    started = []
    rows = []
    try:
        upstream = procs.start("pykv", [sys.executable, "-m", "bench.unikernel_routes", "--serve-kv",
                                        str(kv_port)], None, workdir, cwd=REPO)
        started.append(upstream)
        procs.wait_port(upstream, kv_port)
        conf = os.path.join(gw_dir, "gateway.conf")
        with open(conf, "w") as fh:
            fh.write(gateway_config(gw_port, kv_port))
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", gw_dir, "-c", conf,
                                          "-g", "daemon off;"], None, workdir, cwd=REPO)
        started.append(gateway)
        procs.wait_port(gateway, gw_port, timeout=30)
        ng_conf = os.path.join(ng_dir, "nginx.conf")
        with open(ng_conf, "w") as fh:
            fh.write(nginx_config(ng_port))
        nginx = procs.start("nginx", [NGINX, "-p", ng_dir + "/", "-c", ng_conf, "-g", "daemon off;"], None,
                            workdir, cwd=REPO)
        started.append(nginx)
        procs.wait_port(nginx, ng_port)
        base = f"http://127.0.0.1:{gw_port}"
        assert get(base + "/kv/key1", VALUE, "PUT")[0] == 204
        for path, want in (("/kv/key1", VALUE), ("/py/kv/key1", VALUE)):
            code, body = get(base + path)
            assert (code, body) == (200, want), (path, code, body[:80])
        with open(os.path.join(SITE, "index.html"), "rb") as fh:
            assert get(base + "/site/index.html")[1] == fh.read()
        print(f"{'route':13} {'throughput':>15}  {'CPU':>15}", flush=True)
        routes = [("gw-return", [gateway.pid], gw_port, "/return"),
                  ("uk-echo", [gateway.pid], gw_port, "/echo/hello"),
                  ("uk-echo-sp", [gateway.pid], gw_port, "/echosp/hello"),
                  ("uk-kv", [gateway.pid], gw_port, "/kv/key1"),
                  ("uk-static", [gateway.pid], gw_port, "/site/index.html"),
                  ("nginx-static", [nginx.pid], ng_port, "/index.html"),
                  ("py-kv", [gateway.pid, upstream.pid], gw_port, "/py/kv/key1")]
        only = set(filter(None, args.routes.split(",")))
        for name, pids, port, path in routes:
            if not only or name in only:
                rows.append(measure(name, pids, port, path, args, workdir))
        kills = kill_to_answer(gw_dir, "echo", args.kills) if args.kills else [0.0]
        print(f"kill -9 to replacement answering: median {statistics.median(kills) * 1000:.1f} ms "
              f"(min {min(kills) * 1000:.1f}, max {max(kills) * 1000:.1f}, n={len(kills)})", flush=True)
    finally:
        for proc in reversed(started):
            procs.stop(proc)
    record = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "duration_s": args.duration,
              "connections": args.connections, "routes": rows,
              "kill_to_answer_ms": [round(k * 1000, 1) for k in kills]}
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    with open(os.path.join(RESULTS, f"{stamp}-unikernel-routes.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    with open(os.path.join(RESULTS, f"{stamp}-unikernel-routes.md"), "w") as fh:
        fh.write(f"# Unikernel routes, {record['when']}\n\n`.venv/bin/python -m bench.unikernel_routes "
                 f"--duration {args.duration:g} --connections {args.connections}` (wrk -t1, keep-alive; "
                 "CPU = every process of the server's tree, QEMU included)\n\n"
                 "| route | req/s | CPU us/req | of which QEMU | gateway alone | syscalls/req (server, QEMU) "
                 "| p50 ms | p99 ms | non-2xx |\n"
                 "|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            fh.write(f"| {r['route']} | {r['rps']:.0f} | {r['cpu_us_per_request']} | "
                     f"{r['qemu_cpu_us_per_request']} | {r['front_cpu_us_per_request']} | "
                     f"{r.get('syscalls_per_request', '')}, {r.get('qemu_syscalls_per_request', '')} | "
                     f"{r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['non2xx']} |\n")
        fh.write(f"\nkill -9 to replacement answering (ms): {record['kill_to_answer_ms']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
