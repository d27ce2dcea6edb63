"""The HTTP/2 load client: h2load (Debian's nghttp2-client) in wrk's place for h2 scenarios.

Same shape as bench/wrk.py: ``command`` builds the argv, ``run`` returns a ``wrk.Result``.
h2load reports mean latencies, not percentiles: those fields stay empty.
"""

from __future__ import annotations

import re
import subprocess

from bench import procs
from bench.wrk import Load, Result

_REQUESTS = re.compile(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
_FINISHED = re.compile(r"^finished in ([\d.]+)(ms|s),", re.M)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)


def command(load: Load, port: int, duration: float, cpus: str | None) -> list[str]:
    """The exact h2load argv: ``load.connections`` connections, ``load.streams`` streams each."""
    argv = ["h2load", f"-t{load.threads}", f"-c{load.connections}", f"-m{load.streams}",
            f"-D{max(1, round(duration))}"]
    for header in load.headers:
        argv += ["-H", header]
    argv.append(f"{load.scheme}://127.0.0.1:{port}{load.path}")
    return procs.pinned(argv, cpus)


def parse(stdout: str) -> Result:
    """h2load's summary as a Result; ValueError when it printed none."""
    requests, finished, status = (p.search(stdout) for p in (_REQUESTS, _FINISHED, _STATUS))
    if not (requests and finished and status):
        raise ValueError("h2load printed no summary: " +
                         (stdout.strip().splitlines() or ["(nothing)"])[-1])
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    succeeded = int(requests.group(3))
    return Result(requests=succeeded, duration_s=round(seconds, 3),
                  rps=round(succeeded / seconds, 1) if seconds else 0.0,
                  p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None,
                  non2xx=sum(int(n) for n in status.groups()[1:]),
                  socket_errors=int(requests.group(5)) + int(requests.group(6)))


def run(argv: list[str], duration: float) -> Result:
    """Run h2load to completion and return its parsed result."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                          preexec_fn=procs.raise_nofile)
    if done.returncode != 0:
        msg = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise ValueError("h2load failed: " + msg.splitlines()[0])
    return parse(done.stdout)
