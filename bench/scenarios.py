"""The named scenarios: what the client sends and which backend answers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

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

    def unavailable(self) -> str | None:
        """Why this scenario cannot run here, or None."""
        if self.unikernel is None:
            return None
        return None if unikernel_pass_ready(self.unikernel) else UNIKERNEL_MISSING


def unikernel_pass_ready(service: str) -> bool:
    """Whether the gateway accepts a ``unikernel_pass`` route for service (``gateway -t``).

    To complete the unikernel scenarios once issue 5 lands: make this probe's config match
    the real ``unikernel`` block syntax and image path, then give the gateway's proxy
    config a ``location`` with ``unikernel_pass`` in ``configs.proxy`` when
    ``Scenario.unikernel`` is set, and point the other systems at a Python upstream doing
    the same job (echo, kv GET) or, for static files, at the backend nginx.
    """
    image = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "unikernels", "build", f"{service}.elf")
    if not os.path.exists(image):
        return False
    text = (f"events {{}}\nhttp {{\n  unikernel {service} {{ image {image}; }}\n"
            f"  server {{ listen 127.0.0.1:1; location / {{ unikernel_pass {service}; }} }}\n}}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(text)
        conf.flush()
        done = subprocess.run([sys.executable, "-m", "gateway", "-t", "-q", "-c", conf.name],
                              capture_output=True, timeout=30)
    return done.returncode == 0


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
    Scenario("pipeline", "16 pipelined requests per connection (wrk -c64)",
             Load("/small", 64, script="pipeline.lua"), expect_length=13, latency=False),
    Scenario("upstream-10ms", "upstream answering after 10 ms (Python backend, wrk -c64)",
             Load("/small", 64), backend="slow", expect_length=13),
    Scenario("round-robin-4", "round robin over 4 upstream ports (wrk -c64)",
             Load("/small", 64), upstreams=4, expect_length=13),
    Scenario("uk-echo", "unikernel echo route vs a Python echo upstream",
             Load("/echo", 64), unikernel="echo"),
    Scenario("uk-kv", "unikernel kv GET vs a Python kv upstream",
             Load("/kv/key1", 64), unikernel="kv"),
    Scenario("uk-static", "unikernel static file vs nginx serving the same file",
             Load("/static/index.html", 64), unikernel="static"),
    Scenario("uk-boot", "unikernel worker boot and restart time",
             Load("/echo", 1), unikernel="boot"),
]}
