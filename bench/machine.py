"""What the results were measured on: machine, CPU model and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return text[0] if text else ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return getattr(module, "__version__", "unknown")


def _built_extensions() -> list[str]:
    # Without them the gateway runs its pure-Python twins: say so next to the figures.
    folder = os.path.join(REPO, "_fastpath")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n.split(".")[0] for n in names if n.endswith(".so"))


def describe() -> dict:
    """Machine and versions, for the JSON and Markdown results."""
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "gateway_extensions": _built_extensions(),
        "versions": {
            "nginx": _first_line(["/usr/sbin/nginx", "-v"]),
            "haproxy": _first_line(["/usr/sbin/haproxy", "-v"]),
            "wrk": _first_line(["wrk", "-v"]),
            "python": sys.version.split()[0],
            "uvloop": _module_version("uvloop"),
            "aiohttp": _module_version("aiohttp"),
            "gateway": _first_line([sys.executable, "-m", "gateway", "-v"]),
        },
        "commit": _first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
    }
