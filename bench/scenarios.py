"""The named scenarios: what the client sends and which backend answers."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass

from bench import procs
from bench.backends import KV_KEY, KV_VALUE, SITE
from bench.systems import SYSTEMS, image_path, placement
from bench.wrk import Load

UNIKERNEL_MISSING = "not available yet: needs unikernel_pass (issue 5)"

@dataclass
class Scenario:
    """One named load: client side (``load``) and server side (``backend``, ``upstreams``)."""

    name: str
    title: str
    load: Load
    backend: str = "nginx"          # "nginx" (fixed and static content) or "slow" (Python, delayed)
    upstreams: int = 1              # backend ports behind the proxy, balanced round robin
    expect_length: int | None = None  # body length the sanity request must get
    unikernel: str | None = None    # service name for the gateway's unikernel_pass scenarios
    latency: bool = True            # False where wrk's per-request latency means nothing
    seed: tuple[str, str] | None = None   # (path, value) PUT into a unikernel before the runs
    timing: bool = False            # uk-boot: start and restart times instead of a wrk load
    tls: bool = False               # clients speak HTTPS to the proxy (nginx and gateway only)
    limit_req: bool = False         # every request through a limit_req zone admitting all
    gzip: int = 0                   # the proxy compresses text/plain at this level (0: off)
    http2: bool = False             # clients speak HTTP/2 (h2load; nginx and gateway only)
    rewrite: bool = False           # a map, an if and two rewrites before proxying (issue 11)

    def unavailable(self) -> str | None:
        """Why this scenario cannot run here, or None."""
        if self.unikernel is None:
            return None
        return None if unikernel_pass_ready("echo") else UNIKERNEL_MISSING


@functools.lru_cache(maxsize=None)
def unikernel_pass_ready(service: str) -> bool:
    """Whether a gateway routing ``/`` with ``unikernel_pass service`` answers 200 (a live probe).

    The scenarios probe ``echo``, the reference service, which answers any request."""
    if not os.path.exists(image_path(service)):
        return False
    workdir = tempfile.mkdtemp(prefix="bench-probe-")
    port = procs.free_port()
    try:
        proc, _ = SYSTEMS["gateway-unikernel"].start(workdir, port, [procs.free_port()],
                                                     placement(), service)
    except procs.StartError:
        shutil.rmtree(workdir, ignore_errors=True)
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False
    finally:
        procs.stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


SCENARIOS = {s.name: s for s in [
    Scenario("small", "small response over keep-alive (wrk -c64)",
             Load("/small", 64), expect_length=13),
    Scenario("64k", "64 KiB static file over keep-alive (wrk -c64)",
             Load("/64k.bin", 64), expect_length=64 * 1024),
    Scenario("upload-1m", "1 MiB POST body, small answer (wrk -c16)",
             Load("/upload", 16, script="upload.lua")),
    Scenario("conn-close", "new client connection per request (Connection: close, wrk -c64)",
             Load("/small", 64, headers=("Connection: close",)), expect_length=13),
    Scenario("c1000", "1,000 concurrent keep-alive connections (wrk -c1000)",
             Load("/small", 1000, timeout="10s"), expect_length=13),
    # Client and upstream connections both count against worker_connections (16384 here).
    Scenario("c5000", "5,000 concurrent keep-alive connections (wrk -c5000)",
             Load("/small", 5000, timeout="10s"), expect_length=13),
    # wrk is a closed loop: the faster proxy gets more load, and its backend and client (which
    # share a core) queue more. Paced, both get the same offered load (bench/RESULTS.md, "Tail").
    Scenario("c5000-paced", "5,000 keep-alive connections, each waiting 500 ms between "
             "requests (wrk -c5000 with a delay)",
             Load("/small", 5000, timeout="10s", script="paced.lua"), expect_length=13),
    Scenario("pipeline", "16 pipelined requests per connection (wrk -c64)",
             Load("/small", 64, script="pipeline.lua"), expect_length=13, latency=False),
    Scenario("https-small", "small response over HTTPS keep-alive (TLS 1.3, wrk -c64)",
             Load("/small", 64, scheme="https"), expect_length=13, tls=True),
    Scenario("https-close", "new TLS connection per request (a TLS 1.3 handshake each, "
             "Connection: close, wrk -c64)",
             Load("/small", 64, scheme="https", headers=("Connection: close",)),
             expect_length=13, tls=True),
    Scenario("limit-req", "small response through limit_req (a zone admitting all, wrk -c64)",
             Load("/small", 64), expect_length=13, limit_req=True),
    Scenario("rewrite", "small response through a map, an if and two rewrites, one matching "
             "(wrk -c64)", Load("/small", 64), expect_length=13, rewrite=True),
    Scenario("gzip-10k", "10 KiB text/plain compressed by the proxy, gzip_comp_level 1 "
             "(Accept-Encoding: gzip, wrk -c64)",
             Load("/10k.txt", 64, headers=("Accept-Encoding: gzip",)), gzip=1,
             expect_length=10 * 1024),
    Scenario("ws-echo", "WebSocket echo, 64-byte messages, 16 connections each waiting for its "
             "echo (websockets client and server); a request is one message and its echo",
             Load("/echo", 16, scheme="ws"), backend="ws"),
    Scenario("h2-small", "small response over HTTP/2 (TLS 1.3, ALPN h2; h2load -c4 -m16)",
             Load("/small", 4, scheme="https", client="h2load", streams=16), expect_length=13,
             tls=True, http2=True, latency=False),
    Scenario("upstream-10ms", "upstream answering after 10 ms (Python backend, wrk -c64)",
             Load("/small", 64), backend="slow", expect_length=13),
    Scenario("round-robin-4", "round robin over 4 upstream ports (wrk -c64)",
             Load("/small", 64), upstreams=4, expect_length=13),
    Scenario("uk-echo", "unikernel echo route (gateway-unikernel) vs proxies to a Python echo "
             "upstream (wrk -c64)", Load("/echo", 64), backend="echo", unikernel="echo"),
    Scenario("uk-kv", "unikernel kv GET of a 64-byte value (gateway-unikernel) vs proxies to a "
             "Python kv upstream (wrk -c64)", Load(KV_KEY, 64), backend="kv", unikernel="kv",
             expect_length=len(KV_VALUE), seed=(KV_KEY, KV_VALUE)),
    Scenario("uk-static", "unikernel static file (gateway-unikernel) vs proxies to nginx serving "
             "the same file (wrk -c64)", Load("/index.html", 64), backend="site",
             unikernel="static", expect_length=os.path.getsize(os.path.join(SITE, "index.html"))
             if os.path.exists(os.path.join(SITE, "index.html")) else None),
    Scenario("uk-boot", "unikernel route: gateway start to first answer, and kill -9 of the QEMU "
             "worker to the replacement's first answer (one worker, echo)",
             Load("/boot", 1), unikernel="echo", timing=True),
]}
