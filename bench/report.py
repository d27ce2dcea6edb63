"""Results out: Markdown tables, JSON, a PNG chart, and the summary in bench/RESULTS.md."""

from __future__ import annotations

import json
import os

SUMMARY_START = "<!-- latest-summary:start -->"
SUMMARY_END = "<!-- latest-summary:end -->"
COLUMNS = ["system", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "backend µs/req", "non-2xx",
           "socket err", "status"]


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


# The targets compare the gateway with nginx at equal worker counts.
PAIRS = (("gateway", "nginx"), ("gateway-auto", "nginx-auto"), ("gateway-unikernel", "nginx"))


def ratios(record: dict) -> str:
    """One line per gateway system: its CPU/req, req/s and p99 as multiples of nginx's."""
    by_name = {s["name"]: s["summary"] for s in record["systems"] if s["summary"]}
    lines = []
    for ours, theirs in PAIRS:
        a, b = by_name.get(ours), by_name.get(theirs)
        if not a or not b:
            continue
        parts = []
        for key, label in (("cpu_us_per_req", "CPU/req"), ("rps", "req/s"), ("p99_ms", "p99")):
            if a.get(key) and b.get(key):
                parts.append(f"{label} {a[key] / b[key]:.2f}x")
        if ours == "gateway-unikernel" and a.get("cpu_us_per_req") and b.get("cpu_us_per_req"):
            # Host CPU: gateway plus QEMU against nginx plus the backend it proxies to.
            host = lambda x: x["cpu_us_per_req"] + (x.get("backend_cpu_us_per_req") or 0)
            parts.append(f"host CPU/req (proxy + backend) {host(a) / host(b):.2f}x")
        if parts:
            lines.append(f"{ours} / {theirs}: " + ", ".join(parts))
    return "".join(f"\n{line}  " for line in lines)


def scenario_table(record: dict) -> str:
    """One scenario as a Markdown table (or its 'not available' line)."""
    head = f"### {record['scenario']}: {record['title']}\n\n"
    if "unavailable" in record or "error" in record:
        return head + record.get("unavailable", record.get("error")) + "\n"
    if "timing" in record:
        t = record["timing"]
        runs = lambda values: ", ".join(f"{v:.0f}" for v in values)
        return head + "\n".join([
            "| gateway-unikernel | median ms | each run, ms |", "|---|---|---|",
            f"| start to first answer | {t['summary']['start_ms']:.0f} | {runs(t['start_ms'])} |",
            f"| kill -9 of the QEMU worker to next answer | {t['summary']['restart_ms']:.0f} | "
            f"{runs(t['restart_ms'])} |"]) + "\n"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for system in record["systems"]:
        s = system["summary"]
        lines.append("| " + " | ".join([
            system["name"], _cell(s.get("rps"), ".0f"), _cell(s.get("p50_ms"), ".2f"),
            _cell(s.get("p99_ms"), ".2f"), _cell(s.get("cpu_us_per_req"), ".1f"),
            _cell(s.get("backend_cpu_us_per_req"), ".1f"),
            _cell(s.get("non2xx"), "d"), _cell(s.get("socket_errors"), "d"),
            system["status"].replace("|", "/"),
        ]) + " |")
    return head + "\n".join(lines) + "\n" + ratios(record).rstrip() + "\n"


def _loads(run: dict) -> str:
    # Other work on this shared machine moves the figures: say how busy it was.
    loads = run.get("load_average", {})
    return f"{loads.get('start', '?')} / {loads.get('end', '?')} (other processes share the cores)"


def markdown(run: dict) -> str:
    """The whole run as Markdown: header, placement, tables, exact commands."""
    m = run["machine"]
    v = m["versions"]
    parts = [
        f"# Benchmark run {run['date']} ({run['set']})\n",
        f"- Machine: {m['usable_cores']} usable cores of {m['cores']}, {m['cpu_model']}, "
        f"Linux {m['kernel']}",
        f"- Versions: {v['nginx']}; {v['haproxy']}; {v['wrk']}; Python {v['python']}, "
        f"uvloop {v['uvloop']}, aiohttp {v['aiohttp']}; {v.get('gateway', 'gateway ?')} "
        f"at commit {m.get('commit', '?')}",
        f"- Pinning: {run['placement']}",
        f"- Load average (1 min) at start and end: {_loads(run)}",
        "- Gateway Cython extensions built: "
        + (", ".join(m.get("gateway_extensions", [])) or "none (pure-Python twins)"),
        f"- Each system: {run['settings']['rounds']} interleaved rounds of "
        f"{run['settings']['duration']:g} s after a {run['settings']['warmup']:g} s warm-up; "
        "figures are medians over rounds, errors are sums. CPU µs/req is the proxy's own "
        "user+system CPU (all its processes, /proc/PID/stat) divided by requests served; "
        "backend µs/req the same for the shared backend during that system's runs. "
        "non-2xx is wrk's count of responses with status >= 400.",
        f"- Command: `{run['command']}`\n",
    ]
    for record in run["scenarios"]:
        parts.append(scenario_table(record))
    parts.append("## Exact commands\n")
    for record in run["scenarios"]:
        if "timing" in record:
            parts.append(f"**{record['scenario']}**: `{record['timing']['command']}`\n")
        if not record["systems"]:
            continue
        parts.append(f"**{record['scenario']}**\n")
        parts.append(f"- backend: `{record['backend']['command']}`")
        for system in record["systems"]:
            if system["command"]:
                parts.append(f"- {system['name']}: `{system['command']}`")
        for name, command in record.get("wrk_commands", {}).items():
            parts.append(f"- wrk → {name}: `{command}`")
        parts.append("")
    return "\n".join(parts) + "\n"


def chart(run: dict, path: str) -> bool:
    """Bar charts of req/s and CPU µs/req per system and scenario; False if nothing to draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = [r for r in run["scenarios"] if r["systems"]]
    systems = []
    for record in records:
        for s in record["systems"]:
            if s["summary"] and s["name"] not in systems:
                systems.append(s["name"])
    if not systems:
        return False
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 1.6 * len(records) + 2), 8))
    width = 0.8 / len(systems)
    for ax, key, label in ((axes[0], "rps", "requests/s"),
                           (axes[1], "cpu_us_per_req", "proxy CPU µs per request")):
        for i, name in enumerate(systems):
            values = []
            for record in records:
                found = [s["summary"].get(key) for s in record["systems"] if s["name"] == name]
                values.append(found[0] if found and found[0] is not None else 0)
            ax.bar([x + i * width for x in range(len(records))], values, width, label=name)
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(records))])
        ax.set_xticklabels([r["scenario"] for r in records])
        ax.set_ylabel(label)
        if key == "cpu_us_per_req":
            ax.set_yscale("log")   # the aiohttp proxy costs about 10x the others
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[0].set_title(f"{run['date']} ({run['set']}); medians of {run['settings']['rounds']} rounds",
                      fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(run: dict, out_dir: str) -> dict[str, str]:
    """Write <date>-<set>.json/.md/.png into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{run['date']}-{run['set']}")
    paths = {"json": base + ".json", "md": base + ".md", "png": base + ".png"}
    with open(paths["json"], "w") as f:
        json.dump(run, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(paths["md"], "w") as f:
        f.write(markdown(run))
    if not chart(run, paths["png"]):
        del paths["png"]
    return paths


def update_summary(run: dict, paths: dict[str, str], results_md: str) -> None:
    """Replace the latest-summary section of RESULTS.md, keeping everything else."""
    rel = {k: os.path.relpath(p, os.path.dirname(results_md)) for k, p in paths.items()}
    body = [SUMMARY_START, f"## Latest summary: {run['date']} ({run['set']})", "",
            f"Command: `{run['command']}`  ",
            f"Pinning: {run['placement']}  ",
            f"Load average (1 min) at start and end: {_loads(run)}  ",
            "Gateway Cython extensions built: "
            + (", ".join(run["machine"].get("gateway_extensions", [])) or "none (pure-Python twins)")
            + "  ",
            f"Machine: {run['machine']['usable_cores']} cores, {run['machine']['cpu_model']}  ",
            "Full results: " + ", ".join(f"[{k}]({v})" for k, v in rel.items()), ""]
    for record in run["scenarios"]:
        body.append(scenario_table(record))
    if "png" in rel:
        body.append(f"![requests/s and CPU per request]({rel['png']})\n")
    body.append(SUMMARY_END)
    section = "\n".join(body)
    text = ""
    if os.path.exists(results_md):
        with open(results_md) as f:
            text = f.read()
    if SUMMARY_START in text and SUMMARY_END in text:
        start = text.index(SUMMARY_START)
        end = text.index(SUMMARY_END) + len(SUMMARY_END)
        text = text[:start] + section + text[end:]
    else:
        text = (text.rstrip() + "\n\n" if text else "# Benchmark results\n\n") + section + "\n"
    with open(results_md, "w") as f:
        f.write(text)
