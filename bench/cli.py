"""``python -m bench``: parse the command line, run the chosen scenarios, write the results."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile

from bench import machine, report, runner
from bench.scenarios import SCENARIOS
from bench.systems import DEFAULT_SYSTEMS, SYSTEMS, placement

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
QUICK = runner.Settings(duration=3, rounds=2, warmup=1)
FULL = runner.Settings(duration=10, rounds=3, warmup=2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, documented in --help."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the gateway side by side with nginx, HAProxy and a plain "
                    "aiohttp proxy (wrk client, nginx backend, loopback only).")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="scenario to run (repeatable; default: all)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help="comma-separated systems (default: %(default)s; also: "
                             + ", ".join(n for n in SYSTEMS if n not in DEFAULT_SYSTEMS) + ")")
    parser.add_argument("--quick", action="store_true",
                        help=f"short runs: {QUICK.rounds} rounds of {QUICK.duration:g} s")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"seconds per wrk run (default {FULL.duration:g}, quick {QUICK.duration:g})")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {FULL.rounds})")
    parser.add_argument("--warmup", type=float, metavar="SECONDS", help="warm-up seconds per system")
    parser.add_argument("--list", action="store_true", help="list scenarios and systems, then exit")
    parser.add_argument("--out", default=os.path.join(BENCH_DIR, "results"),
                        help="directory for the JSON/Markdown/PNG results (default: bench/results)")
    parser.add_argument("--no-summary", action="store_true",
                        help="do not rewrite the summary in bench/RESULTS.md")
    parser.add_argument("--render", metavar="JSON",
                        help="rewrite the Markdown, chart and summary of a recorded run, then exit")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir with generated configs and logs")
    return parser.parse_args(argv)


def _check(args: argparse.Namespace, parser_error) -> tuple[list[str], list[str]]:
    scenarios = args.scenario or list(SCENARIOS)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser_error(f"unknown scenario {unknown[0]!r} (see --list)")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        parser_error(f"unknown system {unknown[0] if unknown else ''!r} (see --list)")
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        parser_error(f"{missing[0]} not found: apt-get install {'wrk' if missing[0] == 'wrk' else 'util-linux'}")
    return scenarios, systems


def _settings(args: argparse.Namespace) -> runner.Settings:
    base = QUICK if args.quick else FULL
    return runner.Settings(
        duration=args.duration if args.duration is not None else base.duration,
        rounds=args.rounds if args.rounds is not None else base.rounds,
        warmup=args.warmup if args.warmup is not None else base.warmup)


def _set_name(args: argparse.Namespace, scenarios: list[str]) -> str:
    name = "all" if not args.scenario else "+".join(scenarios)
    return name + ("-quick" if args.quick else "")


def list_all() -> None:
    """Print the scenarios and systems."""
    print("Scenarios:")
    for s in SCENARIOS.values():
        note = "  [unikernel: probed when run]" if s.unikernel else ""
        print(f"  {s.name:15} {s.title}{note}")
    print("Systems:")
    for s in SYSTEMS.values():
        mark = " (default)" if s.name in DEFAULT_SYSTEMS else ""
        print(f"  {s.name:15} {s.kind}, worker_processes/nbthread {s.workers}{mark}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when every requested system produced figures."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.list:
        list_all()
        return 0
    if args.render:
        try:
            with open(args.render) as f:
                recorded = json.load(f)
        except (OSError, ValueError) as exc:
            _die(f"cannot read {args.render}: {exc}")
        return finish(recorded, args)
    scenarios, systems = _check(args, _die)
    settings = _settings(args)
    where = placement()
    now = datetime.datetime.now(datetime.timezone.utc)
    run = {
        "date": now.strftime("%Y-%m-%d-%H%M"),
        "set": _set_name(args, scenarios),
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "machine": machine.describe(),
        "placement": where.describe(),
        "settings": settings.__dict__,
        "systems": systems,
        "scenarios": [],
        "load_average": {"start": round(os.getloadavg()[0], 2)},
    }
    print(f"Pinning: {run['placement']}")
    workdir = tempfile.mkdtemp(prefix="bench-")
    os.chmod(workdir, 0o755)   # nginx workers run unprivileged and must reach their temp/ and www/
    try:
        for name in scenarios:
            print(f"== {name}: {SCENARIOS[name].title}")
            record = runner.run(SCENARIOS[name], systems, settings, where,
                                os.path.join(workdir, name))
            run["scenarios"].append(record)
            print()
            print(report.scenario_table(record))
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr)
        run["interrupted"] = True
    finally:
        if args.keep:
            print(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    run["load_average"]["end"] = round(os.getloadavg()[0], 2)
    return finish(run, args)


def finish(run: dict, args: argparse.Namespace) -> int:
    """Write the results (and the RESULTS.md summary); exit status from the systems' states."""
    paths = report.write(run, args.out)
    if not args.no_summary:
        report.update_summary(run, paths, os.path.join(BENCH_DIR, "RESULTS.md"))
    print("Results: " + ", ".join(paths.values()))
    ok = all(s["status"] == "ok" for r in run["scenarios"] for s in r["systems"])
    ok = ok and not any("error" in r for r in run["scenarios"])
    if run.get("interrupted"):
        return 130
    return 0 if ok else 1


def _die(message: str) -> None:
    print(f"python -m bench: error: {message}", file=sys.stderr)
    sys.exit(2)
