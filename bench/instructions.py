"""User-space instructions per proxied request, counted by valgrind (callgrind).

CPU time per request moves with whatever else the shared machine runs; an instruction
count does not. Each system runs as one process under ``valgrind --tool=callgrind``
in front of the bench backend (nginx, /small); one keep-alive client sends N1
requests to one instance and N2 to a second one, one at a time, and the difference
of the two totals divided by N2 - N1 is the cost of one request, start-up and shutdown
cancelled out. Kernel work (the system calls, the same for all: a read and a write on
each side) is not counted; run ``python -m bench`` for whole CPU time.

    .venv/bin/python -m bench.instructions [--systems nginx,gateway,uvloop-relay]
                                           [--requests 2000,6000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from bench import backends, configs, procs
from bench.systems import NGINX, REPO

TOTAL = re.compile(r"^\s*([\d,]+) \(\s*100\.0+%\)\s+PROGRAM TOTALS", re.M)


def _command(system: str, workdir: str, port: int, backend: int) -> list[str]:
    """The system's argv, one process (nginx and the gateway with master_process off)."""
    if system == "uvloop-relay":
        return [sys.executable, "-m", "bench.relay_floor", "--port", str(port),
                "--upstream", f"127.0.0.1:{backend}"]
    is_nginx = system == "nginx"
    text = configs.proxy(port, [backend], "1", nginx=is_nginx)
    text = text.replace("worker_processes 1;", "worker_processes 1;\nmaster_process off;", 1)
    config = os.path.join(workdir, "proxy.conf")
    with open(config, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(workdir, "temp"), exist_ok=True)
    program = [NGINX] if is_nginx else [sys.executable, "-m", "gateway"]
    return [*program, "-p", workdir + "/", "-c", config, "-g", "daemon off;"]


def _drive(port: int, requests: int, timeout: float = 120.0) -> None:
    """Send GET /small on one keep-alive connection, one at a time, reading each answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on 127.0.0.1:{port} under valgrind")
            time.sleep(0.2)
    request = f"GET /small HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    body = (configs.SMALL_BODY.strip() + "\n").encode()
    with sock:
        sock.settimeout(timeout)
        for _ in range(requests):
            sock.sendall(request)
            answer = b""
            while not (b"\r\n\r\n" in answer and answer.endswith(body)):
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("the proxy closed the connection")
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"unexpected answer: {answer[:80]!r}")


def count(system: str, requests: int, backend: int, workdir: str) -> int:
    """Total instructions of one run of ``system`` serving ``requests`` requests."""
    port = procs.free_port()
    out = os.path.join(workdir, f"callgrind-{system}-{requests}.out")
    rundir = os.path.join(workdir, f"{system}-{requests}")
    os.makedirs(rundir)
    os.chmod(rundir, 0o755)
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            *_command(system, rundir, port, backend)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _drive(port, requests)
    finally:
        # nginx and the gateway finish gracefully on QUIT, the relay on INT.
        proc.send_signal(signal.SIGINT if system == "uvloop-relay" else signal.SIGQUIT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    summary = subprocess.run(["callgrind_annotate", "--threshold=0", out],
                             capture_output=True, text=True).stdout
    match = TOTAL.search(summary)
    if match is None:
        raise SystemExit(f"no callgrind total for {system} ({out})")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="nginx,gateway,uvloop-relay")
    parser.add_argument("--requests", default="2000,6000", help="N1,N2 (N2 > N1)")
    args = parser.parse_args(argv)
    n1, n2 = (int(n) for n in args.requests.split(","))
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    workdir = tempfile.mkdtemp(prefix="bench-instructions-")
    backend_port = procs.free_port()
    backend, _ = backends.start("nginx", [backend_port], os.path.join(workdir, "backend"), None)
    try:
        print(f"{'system':14s} {'instructions/request':>21s}   ({n2} - {n1} requests)")
        for system in args.systems.split(","):
            per_request = (count(system, n2, backend_port, workdir)
                           - count(system, n1, backend_port, workdir)) / (n2 - n1)
            print(f"{system:14s} {per_request:21,.0f}", flush=True)
    finally:
        procs.stop(backend)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
