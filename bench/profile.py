"""``python -m bench.profile``: sample the gateway's worker with py-spy under wrk load.

Prints (and writes next to the other results) where the worker's busy time goes: the
functions with the most samples on top of the stack (self) and anywhere on it (total).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

from bench import backends, h2load, procs, runner, wrk
from bench.scenarios import SCENARIOS
from bench.systems import SYSTEMS, placement

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def summarize(raw: str, top: int = 25) -> str:
    """Self and total sample shares per frame from py-spy's raw (collapsed stacks) output."""
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return "no samples (was the worker busy?)\n"
    out = [f"{samples} samples of the busy worker", "", "| self % | function (file:line) |",
           "|---|---|"]
    out += [f"| {100 * n / samples:.1f} | `{f}` |" for f, n in own.most_common(top)]
    out += ["", "| total % | function (file:line) |", "|---|---|"]
    out += [f"| {100 * n / samples:.1f} | `{f}` |" for f, n in total.most_common(top)]
    return "\n".join(out) + "\n"


def worker_pid(master: int) -> int:
    """The first child of the gateway's master (its worker), or the master when it has none."""
    children = [p for p in procs.tree_pids(master) if p != master]
    return min(children) if children else master


def main(argv: list[str] | None = None) -> int:
    """Run one scenario against the one-worker gateway with py-spy attached to the worker."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--scenario", default="small", choices=sorted(SCENARIOS))
    parser.add_argument("--duration", type=int, default=10, help="seconds sampled")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--native", action="store_true", help="include C/Cython frames")
    parser.add_argument("--lines", action="store_true", help="one row per source line")
    parser.add_argument("--out", default=os.path.join(BENCH_DIR, "results"))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    scenario = SCENARIOS[args.scenario]
    if scenario.unikernel:
        print("profiling a unikernel scenario is not supported yet", file=sys.stderr)
        return 2
    where = placement()
    workdir = tempfile.mkdtemp(prefix="bench-profile-")
    os.chmod(workdir, 0o755)
    ports = [procs.free_port() for _ in range(scenario.upstreams)]
    backend, _ = backends.start(scenario.backend, ports, os.path.join(workdir, "backend"),
                                where.backend)
    gateway = None
    try:
        port = procs.free_port()
        # Started as the runner starts it, so TLS, HTTP/2 and WebSocket scenarios profile too.
        tls = runner.certificate(workdir) if scenario.tls else None
        gateway, _ = SYSTEMS["gateway"].start(os.path.join(workdir, "gateway"), port, ports, where,
                                              None, tls, scenario.limit_req, scenario.gzip,
                                              upgrade=scenario.load.scheme == "ws",
                                              http2=scenario.http2, rewrite=scenario.rewrite)
        pid = worker_pid(gateway.pid)
        script = wrk.write_script(scenario.load, workdir)
        client = runner.client_command(scenario, port, args.duration + 2, script, where.client)
        load = subprocess.Popen(client, stdout=subprocess.PIPE, text=True,
                                preexec_fn=procs.raise_nofile)
        raw_path = os.path.join(workdir, "profile.raw")
        spy_argv = [spy, "record", "-p", str(pid), "-d", str(args.duration), "-r", str(args.rate),
                    "-f", "raw", "-o", raw_path]
        if not args.lines:
            spy_argv.append("--function")   # one row per function, not per line
        # Native unwinding needs the process stopped while sampled; Python-only sampling does not.
        spy_argv.append("--native" if args.native else "--nonblocking")
        spied = subprocess.run(spy_argv, capture_output=True, text=True)
        stdout, _ = load.communicate(timeout=args.duration + 60)
        if spied.returncode != 0:
            print("py-spy failed: " + (spied.stderr.strip() or spied.stdout.strip()), file=sys.stderr)
            return 1
        with open(raw_path) as f:
            raw = f.read()
    finally:
        if gateway is not None:
            procs.stop(gateway)
        procs.stop(backend)
    result = (h2load.parse if scenario.load.client == "h2load" else wrk.parse)(stdout)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    text = (f"# Gateway profile {stamp} ({scenario.name})\n\n"
            f"- `{' '.join(spy_argv[:1] + ['record', '-p', 'WORKER'] + spy_argv[4:])}` during "
            f"`{' '.join(runner.client_command(scenario, 0, args.duration + 2, 'SCRIPT', where.client))}`\n"
            f"- under the profiler: {result.rps:.0f} req/s\n\n" + summarize(raw))
    os.makedirs(args.out, exist_ok=True)
    kind = "-native" if args.native else ""
    base = os.path.join(args.out, f"{stamp}-profile-{scenario.name}{kind}")
    with open(base + ".md", "w") as f:
        f.write(text)
    shutil.copy(raw_path, base + ".raw.txt")
    shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    print(f"Written: {base}.md, {base}.raw.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
