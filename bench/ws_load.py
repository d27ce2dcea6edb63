"""The WebSocket load client of the ``ws-echo`` scenario: what wrk is to the HTTP scenarios.

``connections`` WebSocket connections (the `websockets` library on uvloop) each send one message
of ``size`` bytes, wait for its echo, and send the next, for ``duration`` seconds. It prints the
same ``BENCH-JSON`` summary line as wrk's reporter (bench/lua/report.lua), a "request" being one
message and its echo, so bench/wrk.py runs and parses it unchanged.

    .venv/bin/python -m bench.ws_load --port 8080 [--connections 16] [--size 64] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import uvloop
from websockets.asyncio.client import connect

from bench import procs
from bench.wrk import MARK

PATH = "/echo"


def command(load, port: int, duration: float, _script_path: str, cpus: str | None) -> list[str]:
    """The argv of one run against 127.0.0.1:port (wrk.command's signature)."""
    argv = [sys.executable, "-m", "bench.ws_load", "--port", str(port),
            "--connections", str(load.connections), "--duration", f"{duration:g}",
            "--path", load.path]
    return procs.pinned(argv, cpus)


async def _one(port: int, path: str, size: int, until: float, latencies: list, errors: list):
    message = b"m" * size
    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", compression=None,
                           ping_interval=None, max_size=None) as ws:
            while True:
                started = time.perf_counter()
                if started >= until:
                    return
                await ws.send(message)
                if await ws.recv() != message:
                    errors.append("wrong echo")
                    return
                latencies.append(time.perf_counter() - started)
    except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
        errors.append(str(exc))
    except Exception as exc:      # a closed connection or a refused handshake: counted, not raised
        errors.append(f"{type(exc).__name__}: {exc}")


async def run(port: int, path: str, connections: int, size: int, duration: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    began = time.perf_counter()
    until = began + duration
    await asyncio.gather(*(_one(port, path, size, until, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p):
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1e6) \
            if latencies else 0
    return {"requests": len(latencies), "duration_us": int(elapsed * 1e6),
            "p50_us": pct(0.5), "p90_us": pct(0.9), "p99_us": pct(0.99),
            "max_us": int(latencies[-1] * 1e6) if latencies else 0,
            "status": 0, "connect": len(errors), "read": 0, "write": 0, "timeout": 0}


def check(port: int, path: str = PATH) -> None:
    """One message echoed through the proxy, or an exception saying why not."""
    async def once():
        async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
            await ws.send("check")
            if await ws.recv() != "check":
                raise ValueError("wrong echo")
    asyncio.run(asyncio.wait_for(once(), 10))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=PATH)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    summary = asyncio.run(run(args.port, args.path, args.connections, args.size, args.duration))
    print(MARK + json.dumps(summary))


if __name__ == "__main__":
    main()
