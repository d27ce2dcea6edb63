"""Request composition (issue 13) side by side with nginx doing the nearest equivalent.

  auth+upstream   gateway: unikernel_auth (auth guest) then proxy_pass
                  nginx:   auth_request to a Python JWT-checking service, then proxy_pass
  cache-hit       gateway: unikernel_cache (kv guests), every request a hit
                  nginx:   proxy_cache on disk, every request a hit
  auth+cache-hit  both of the above in one location

The upstream and nginx's auth service are the same bare uvloop Protocol (a few microseconds per request).
CPU is counted over every process the system needs: the gateway with its QEMU children (host CPU) or
nginx; plus the upstream and, for nginx, the auth service. "front" is the gateway's or nginx's own.

Run: .venv/bin/python -m bench.composition [--duration S] [--connections N] [--rounds R]
Writes bench/results/<time>-composition.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request

from bench import procs, wrk
from bench.systems import NGINX, REPO
from bench.unikernel_routes import qemu_cpu

RESULTS = os.path.join(REPO, "bench", "results")
KEY = b"bench composition key"
BODY = b'{"hello": "world", "items": [1, 2, 3]}\n'


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token():
    head = _b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = _b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
    sig = _b64(hmac.new(KEY, head + b"." + claims, hashlib.sha256).digest())
    return (head + b"." + claims + b"." + sig).decode()


def gateway_config(port, upstream_port):
    return f"""
worker_processes 1;
error_log error.log notice;
pid gateway.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    unikernel auth {{ image auth; instances 1 1; setting key {KEY.hex()}; }}
    unikernel kv {{ image kv; instances 1 1; balance hash $request_uri consistent; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /auth/ {{ unikernel_auth auth set_header X-User=sub; proxy_pass http://app; }}
        location /cache/ {{ unikernel_cache kv; proxy_pass http://app; }}
        location /both/ {{ unikernel_auth auth; unikernel_cache kv; proxy_pass http://app; }}
    }}
}}
"""


def nginx_config(port, upstream_port, auth_port, cache_dir):
    # Workers write the cache: run them as the user that owns the temporary folder.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
error_log stderr error;
pid nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    proxy_cache_path {cache_dir} levels=1:2 keys_zone=bench:10m;
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    upstream checker {{ server 127.0.0.1:{auth_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /_check {{
            internal;
            proxy_pass http://checker;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /auth/ {{ auth_request /_check; proxy_pass http://app; }}
        location /cache/ {{ proxy_cache bench; proxy_cache_valid 200 10m; proxy_pass http://app; }}
        location /both/ {{ auth_request /_check; proxy_cache bench; proxy_cache_valid 200 10m;
                          proxy_pass http://app; }}
    }}
}}
"""


class AppProtocol(asyncio.Protocol):
    """The upstream: a small public, cacheable JSON answer to every request."""

    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, max-age=600\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(self.reply(head))

    def reply(self, head):
        return self.answer


class CheckerProtocol(AppProtocol):
    """nginx's auth service: verifies the HS256 JWT in Authorization (signature and exp)."""

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    denied = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"

    def reply(self, head):
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"authorization":
                parts = value.strip().split(b" ", 1)[-1].split(b".")
                if len(parts) == 3:
                    want = _b64(hmac.new(KEY, parts[0] + b"." + parts[1], hashlib.sha256).digest())
                    if hmac.compare_digest(want, parts[2]):
                        claims = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
                        if claims.get("exp", 0) > time.time():
                            return self.ok
        return self.denied


def serve(kind, port):
    import uvloop
    loop = uvloop.new_event_loop()
    protocol = CheckerProtocol if kind == "checker" else AppProtocol
    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", port))
    try:
        loop.run_forever()
    finally:
        server.close()


def measure(system, route, front, helpers, port, args, workdir, headers):
    load = wrk.Load(path=f"/{route}/item", connections=args.connections, headers=headers)
    script = wrk.write_script(load, workdir)
    argv = wrk.command(load, port, args.duration, script, None)
    pids = [front, *helpers]
    before = [procs.cpu_seconds(pid) for pid in pids]
    qemu_before = qemu_cpu([front])
    result = wrk.run(argv, args.duration)
    used = [procs.cpu_seconds(pid) - b for pid, b in zip(pids, before)]
    qemu_used = qemu_cpu([front]) - qemu_before
    n = max(result.requests, 1)
    row = {"system": system, "route": route, "rps": result.rps,
           "cpu_us_per_request": round(sum(used) / n * 1e6, 1),
           "front_cpu_us_per_request": round((used[0] - qemu_used) / n * 1e6, 1),
           "qemu_cpu_us_per_request": round(qemu_used / n * 1e6, 1),
           "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "requests": result.requests,
           "non2xx": result.non2xx, "socket_errors": result.socket_errors}
    print(f"{system:8} {route:6} {row['rps']:>8.0f} req/s  total {row['cpu_us_per_request']:>6} us/req  "
          f"front {row['front_cpu_us_per_request']:>6}  QEMU {row['qemu_cpu_us_per_request']:>5}  "
          f"p99 {row['p99_ms']:.2f} ms  non-2xx {row['non2xx']}", flush=True)
    return row


def get(url, headers):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
        return resp.status, dict(resp.headers), resp.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    workdir = tempfile.mkdtemp(prefix="bench-composition-")
    gw_dir, ng_dir = os.path.join(workdir, "gateway"), os.path.join(workdir, "nginx")
    os.makedirs(gw_dir)
    os.makedirs(os.path.join(ng_dir, "cache"))
    gw_port, ng_port, app_port, auth_port = (procs.free_port() for _ in range(4))
    auth_header = f"Authorization: Bearer {token()}"
    started, rows = [], []
    try:
        app = procs.start("app", [sys.executable, "-m", "bench.composition", "--serve", "app", str(app_port)],
                          None, workdir, cwd=REPO)
        checker = procs.start("checker", [sys.executable, "-m", "bench.composition", "--serve", "checker",
                                          str(auth_port)], None, workdir, cwd=REPO)
        started += [app, checker]
        procs.wait_port(app, app_port)
        procs.wait_port(checker, auth_port)
        conf = os.path.join(gw_dir, "gateway.conf")
        with open(conf, "w") as fh:
            fh.write(gateway_config(gw_port, app_port))
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", gw_dir, "-c", conf,
                                          "-g", "daemon off;"], None, workdir, cwd=REPO)
        started.append(gateway)
        procs.wait_port(gateway, gw_port, timeout=30)
        ng_conf = os.path.join(ng_dir, "nginx.conf")
        with open(ng_conf, "w") as fh:
            fh.write(nginx_config(ng_port, app_port, auth_port, os.path.join(ng_dir, "cache")))
        nginx = procs.start("nginx", [NGINX, "-p", ng_dir + "/", "-c", ng_conf, "-g", "daemon off;"], None,
                            workdir, cwd=REPO)
        started.append(nginx)
        procs.wait_port(nginx, ng_port)
        good = {"Authorization": auth_header.split(": ", 1)[1]}
        for port in (gw_port, ng_port):
            for route in ("auth", "cache", "both"):
                for _ in range(2):       # the second one is a hit where the route caches
                    code, _, body = get(f"http://127.0.0.1:{port}/{route}/item", good)
                    assert (code, body) == (200, BODY), (port, route, code)
        _, headers, _ = get(f"http://127.0.0.1:{gw_port}/both/item", good)
        assert headers.get("X-Cache") == "HIT", headers
        for _ in range(args.rounds):
            for route in ("auth", "cache", "both"):
                extra = (auth_header,) if route != "cache" else ()
                rows.append(measure("gateway", route, gateway.pid, [app.pid], gw_port, args, workdir, extra))
                rows.append(measure("nginx", route, nginx.pid, [app.pid, checker.pid], ng_port, args, workdir,
                                    extra))
    finally:
        for proc in reversed(started):
            procs.stop(proc)
    summary = []
    for route in ("auth", "cache", "both"):
        def med(system, field):
            return statistics.median(r[field] for r in rows if r["system"] == system and r["route"] == route)
        summary.append({"route": route,
                        "cpu_ratio": round(med("gateway", "cpu_us_per_request")
                                           / med("nginx", "cpu_us_per_request"), 2),
                        "rps_ratio": round(med("gateway", "rps") / med("nginx", "rps"), 2),
                        "p99_ratio": round(med("gateway", "p99_ms") / med("nginx", "p99_ms"), 2)})
        print(f"{route:6} gateway/nginx: CPU {summary[-1]['cpu_ratio']}x  req/s {summary[-1]['rps_ratio']}x  "
              f"p99 {summary[-1]['p99_ratio']}x", flush=True)
    record = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "duration_s": args.duration,
              "connections": args.connections, "rounds": args.rounds, "rows": rows, "summary": summary}
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    with open(os.path.join(RESULTS, f"{stamp}-composition.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    with open(os.path.join(RESULTS, f"{stamp}-composition.md"), "w") as fh:
        fh.write(f"# Request composition, {record['when']}\n\n`.venv/bin/python -m bench.composition "
                 f"--duration {args.duration:g} --connections {args.connections} --rounds {args.rounds}` "
                 "(wrk -t1, keep-alive; total CPU = front + upstream (+ nginx's auth service), "
                 "the gateway's QEMU children included)\n\n"
                 "| system | route | req/s | total CPU us/req | front | of which QEMU | p50 ms | p99 ms | non-2xx |\n"
                 "|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            fh.write(f"| {r['system']} | {r['route']} | {r['rps']:.0f} | {r['cpu_us_per_request']} | "
                     f"{r['front_cpu_us_per_request']} | {r['qemu_cpu_us_per_request']} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['non2xx']} |\n")
        fh.write("\n| route | CPU gateway/nginx | req/s | p99 |\n|---|---|---|---|\n")
        for s in summary:
            fh.write(f"| {s['route']} | {s['cpu_ratio']}x | {s['rps_ratio']}x | {s['p99_ratio']}x |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
