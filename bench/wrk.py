"""The load client: build a wrk command line and script, run it, parse its JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

from bench import procs

LUA_DIR = os.path.join(os.path.dirname(__file__), "lua")
MARK = "BENCH-JSON "


@dataclass
class Load:
    """What one wrk run sends: path, connections, extra headers and a Lua script part."""

    path: str = "/"
    connections: int = 64
    threads: int = 1
    headers: tuple[str, ...] = ()
    script: str | None = None          # file name in bench/lua/, e.g. "pipeline.lua"
    timeout: str = "5s"
    scheme: str = "http"               # "https" for the TLS scenarios
    client: str = "wrk"                # "h2load" for the HTTP/2 scenarios (bench/h2load.py)
    streams: int = 1                   # h2load: concurrent streams per connection


@dataclass
class Result:
    """One wrk run, as measured by wrk itself."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def write_script(load: Load, workdir: str) -> str:
    """The scenario's Lua part followed by the JSON reporter, written into workdir."""
    parts = []
    if load.script:
        with open(os.path.join(LUA_DIR, load.script)) as f:
            parts.append(f.read())
    with open(os.path.join(LUA_DIR, "report.lua")) as f:
        parts.append(f.read())
    name = (load.script or "plain.lua").replace(".lua", "") + "-report.lua"
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def command(load: Load, port: int, duration: float, script_path: str,
            cpus: str | None) -> list[str]:
    """The exact wrk argv for one run against 127.0.0.1:port."""
    argv = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={load.timeout}", "--latency", "-s", script_path]
    for header in load.headers:
        argv += ["-H", header]
    argv.append(f"{load.scheme}://127.0.0.1:{port}{load.path}")
    return procs.pinned(argv, cpus)


def parse(stdout: str) -> Result:
    """Read the reporter's line from wrk's output; ValueError when it is missing."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK):])
            break
    else:
        raise ValueError("wrk printed no summary: " + (stdout.strip().splitlines() or ["(nothing)"])[-1])
    seconds = data["duration_us"] / 1e6
    return Result(
        requests=data["requests"],
        duration_s=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
        non2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
    )


def run(argv: list[str], duration: float) -> Result:
    """Run wrk to completion and return its parsed result."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                          preexec_fn=procs.raise_nofile)
    if done.returncode != 0:
        msg = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}")
        raise ValueError("wrk failed: " + msg.splitlines()[0])
    return parse(done.stdout)
