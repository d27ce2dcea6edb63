"""The proxies under test: how each one is configured, started and pinned."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from bench import configs, procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"


def image_path(service: str) -> str:
    """Where ``make -C unikernels`` puts a service's image."""
    return os.path.join(REPO, "unikernels", "build", f"{service}.elf")


@dataclass
class Placement:
    """Which CPUs each role runs on (taskset lists); None means unpinned."""

    proxy: str | None
    proxy_multi: str | None       # proxies with one worker per core
    client: str | None
    backend: str | None

    def describe(self) -> str:
        """One line for the output and RESULTS.md."""
        if self.proxy is None:
            return "unpinned (one CPU)"
        return (f"proxy on CPU {self.proxy} (one worker/thread; multi-worker systems on "
                f"CPUs {self.proxy_multi}), wrk client on CPU {self.client}, "
                f"backend on CPU {self.backend}")


def placement() -> Placement:
    """Proxy alone on CPU 0; client and backend share CPU 1 on a 2-core machine."""
    ncpu = len(os.sched_getaffinity(0))
    if ncpu < 2:
        return Placement(None, None, None, None)
    cpus = sorted(os.sched_getaffinity(0))
    backend = cpus[2] if ncpu >= 3 else cpus[1]
    return Placement(str(cpus[0]), ",".join(map(str, cpus)), str(cpus[1]), str(backend))


@dataclass
class System:
    """One proxy under test."""

    name: str
    kind: str                 # nginx, gateway, haproxy, aiohttp, relay
    workers: str = "1"        # "1" or "auto"
    unikernel: bool = False   # routes with unikernel_pass (only in the unikernel scenarios)

    def cpus(self, where: Placement) -> str | None:
        return where.proxy_multi if self.workers == "auto" else where.proxy

    def prepare(self, workdir: str, port: int, upstreams: list[int],
                service: str | None = None,
                tls: tuple[str, str] | None = None,
                limit_req: bool = False, gzip: int = 0,
                upgrade: bool = False, http2: bool = False,
                rewrite: bool = False) -> tuple[list[str], dict]:
        """Write the system's config into workdir; return its argv and {file name: text}."""
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)   # nginx workers run as an unprivileged user
        if self.kind in ("nginx", "gateway"):
            name = f"{self.kind}.conf"
            route = (service, image_path(service)) if self.unikernel and service else None
            text = configs.proxy(port, upstreams, self.workers, nginx=self.kind == "nginx",
                                 unikernel=route, tls=tls, limit_req=limit_req, gzip=gzip,
                                 upgrade=upgrade, http2=http2, rewrite=rewrite)
            if self.kind == "nginx":
                os.makedirs(os.path.join(workdir, "temp"), exist_ok=True)
                argv = [NGINX, "-p", workdir + "/", "-c", os.path.join(workdir, name),
                        "-g", "daemon off;"]
            else:
                argv = [sys.executable, "-m", "gateway", "-p", workdir + "/", "-c",
                        os.path.join(workdir, name), "-g", "daemon off;"]
        elif self.kind == "haproxy":
            name = "haproxy.cfg"
            threads = len(os.sched_getaffinity(0)) if self.workers == "auto" else int(self.workers)
            text = configs.haproxy(port, upstreams, threads)
            argv = [HAPROXY, "-f", os.path.join(workdir, name), "-db"]
        elif self.kind in ("aiohttp", "relay"):
            module = "bench.aiohttp_proxy" if self.kind == "aiohttp" else "bench.relay_floor"
            argv = [sys.executable, "-m", module, "--port", str(port)]
            for p in upstreams:
                argv += ["--upstream", f"127.0.0.1:{p}"]
            return argv, {}
        else:
            raise ValueError(f"unknown system kind {self.kind!r}")
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
        return argv, {name: text}

    def start(self, workdir: str, port: int, upstreams: list[int], where: Placement,
              service: str | None = None,
              tls: tuple[str, str] | None = None,
              limit_req: bool = False, gzip: int = 0,
              upgrade: bool = False, http2: bool = False,
              rewrite: bool = False) -> tuple[procs.Proc, dict]:
        """Start the system on port; StartError with its first stderr line when it fails."""
        argv, texts = self.prepare(workdir, port, upstreams, service, tls, limit_req, gzip,
                                   upgrade, http2, rewrite)
        proc = procs.start(self.name, argv, self.cpus(where), workdir, cwd=REPO)
        try:
            procs.wait_port(proc, port)
        except procs.StartError:
            procs.stop(proc)
            raise
        return proc, texts


SYSTEMS = {s.name: s for s in [
    System("nginx", "nginx"),
    System("haproxy", "haproxy"),
    System("aiohttp", "aiohttp"),
    System("gateway", "gateway"),
    System("gateway-auto", "gateway", "auto"),
    System("nginx-auto", "nginx", "auto"),
    System("haproxy-auto", "haproxy", "auto"),
    System("gateway-unikernel", "gateway", unikernel=True),
    System("uvloop-relay", "relay"),     # the floor: bytes relayed, no HTTP (relay_floor.py)
]}
DEFAULT_SYSTEMS = ["nginx", "haproxy", "aiohttp", "gateway", "gateway-auto", "nginx-auto"]
