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

"gateway-unikernel" answers from a unikernel echo worker (socketpair) instead: the gateway's own
instructions per request on the unikernel path (valgrind does not follow it into QEMU).
A system may carry features: "gateway+access_log" writes nginx's combined access log,
"gateway+access_log_json" the ready-made json format, "gateway+metrics" has a `metrics`
location (the requests measured are counted, not scraped), "+rewrite" (nginx too) puts a map,
an if and two rewrites before proxy_pass as the bench's rewrite scenario does; "+" joins several.
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


# Config edits per feature (see the docstring).
FEATURES = {
    "access_log": ("access_log off;", "access_log logs/access.log;"),
    "access_log_json": ("access_log off;", "access_log logs/access.log json;"),
    "metrics": ("        location / {", "        location = /metrics { metrics; }\n        location / {"),
}


def _command(system: str, workdir: str, port: int, backend: int) -> list[str]:
    """The system's argv, one process (nginx and the gateway with master_process off)."""
    system, *features = system.split("+")
    if system == "uvloop-relay":
        return [sys.executable, "-m", "bench.relay_floor", "--port", str(port),
                "--upstream", f"127.0.0.1:{backend}"]
    is_nginx = system == "nginx"
    unikernel = ("echo", os.path.join(REPO, "unikernels", "build", "echo.elf")) \
        if system == "gateway-unikernel" else None
    text = configs.proxy(port, [backend], "1", nginx=is_nginx, unikernel=unikernel,
                         rewrite="rewrite" in features)
    if unikernel:
        # Socketpair: the same path on any host; a generous boot under valgrind's slowdown.
        text = text.replace("image ", "transport socketpair; setting boot_timeout 60s; "
                            "setting hang_timeout 60s; image ", 1)
    text = text.replace("worker_processes 1;", "worker_processes 1;\nmaster_process off;", 1)
    for feature in (f for f in features if f != "rewrite"):
        old, new = FEATURES[feature]
        text = text.replace(old, new, 1)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    config = os.path.join(workdir, "proxy.conf")
    with open(config, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(workdir, "temp"), exist_ok=True)
    program = [NGINX] if is_nginx else [sys.executable, "-m", "gateway"]
    return [*program, "-p", workdir + "/", "-c", config, "-g", "daemon off;"]


def _drive(port: int, requests: int, timeout: float = 120.0, body: bytes | None = None) -> None:
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
    body = body or (configs.SMALL_BODY.strip() + "\n").encode()
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
        # The echo worker answers with the URI.
        _drive(port, requests, body=b"/small" if system == "gateway-unikernel" else None)
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
    parser.add_argument("--keep", action="store_true",
                        help="keep the callgrind files (for callgrind_annotate --diff) and say where")
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
        if args.keep:
            print(f"callgrind files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
