"""Run one scenario: start the backend and every system, then interleave wrk rounds over them."""

from __future__ import annotations

import os
import shlex
import ssl
import statistics
import subprocess
import urllib.request
import zlib
from dataclasses import dataclass, field

from bench import backends, boot, h2load, procs, wrk, ws_load
from bench.scenarios import Scenario
from bench.systems import SYSTEMS, Placement


@dataclass
class Settings:
    """How long and how often to measure."""

    duration: float
    rounds: int
    warmup: float


@dataclass
class SystemResult:
    """One system in one scenario: per-round measurements and their medians."""

    name: str
    status: str = "ok"                      # "ok" or why it has no figures
    command: str = ""
    configs: dict = field(default_factory=dict)
    rounds: list[dict] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)   # first lines, e.g. the gateway's warnings

    def median(self, key: str) -> float | None:
        """Median of one per-round figure, None without rounds."""
        values = [r[key] for r in self.rounds if r.get(key) is not None]
        return statistics.median(values) if values else None

    def summary(self) -> dict:
        """The figures the tables show."""
        if not self.rounds:
            return {}
        return {
            "rps": round(self.median("rps"), 1),
            "p50_ms": _round(self.median("p50_ms"), 3),
            "p99_ms": _round(self.median("p99_ms"), 3),
            "cpu_us_per_req": _round(self.median("cpu_us_per_req")),
            "backend_cpu_us_per_req": _round(self.median("backend_cpu_us_per_req")),
            "non2xx": sum(r["non2xx"] for r in self.rounds),
            "socket_errors": sum(r["socket_errors"] for r in self.rounds),
            "requests": sum(r["requests"] for r in self.rounds),
        }

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "command": self.command,
                "configs": self.configs, "stderr": self.stderr, "rounds": self.rounds, "summary": self.summary()}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def sanity_check(port: int, scenario: Scenario) -> None:
    """One GET through the proxy must answer 200 (and the expected body length); for a
    WebSocket scenario, one message must come back."""
    if scenario.load.scheme == "ws":
        try:
            ws_load.check(port, scenario.load.path)
        except Exception as exc:     # whatever the handshake or the echo raised
            raise procs.StartError(f"failed check: WebSocket echo: {exc}") from exc
        return
    url = f"{scenario.load.scheme}://127.0.0.1:{port}{scenario.load.path}"
    context = ssl._create_unverified_context() if scenario.tls else None   # our own test cert
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            body = resp.read()
            status = resp.status
    except OSError as exc:
        raise procs.StartError(f"failed check: GET {scenario.load.path}: {exc}") from exc
    if status != 200:
        raise procs.StartError(f"failed check: GET {scenario.load.path} answered {status}")
    if scenario.expect_length is not None and len(body) != scenario.expect_length:
        raise procs.StartError(f"failed check: GET {scenario.load.path} gave {len(body)} bytes, "
                               f"expected {scenario.expect_length}")
    if scenario.gzip:
        # The load asks for gzip: the answer must be compressed and give the same text back.
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            packed = resp.read()
            encoding = resp.headers.get("Content-Encoding")
        if encoding != "gzip" or zlib.decompress(packed, 31) != body:
            raise procs.StartError(f"failed check: GET {scenario.load.path} with gzip gave "
                                   f"Content-Encoding {encoding}, {len(packed)} bytes")


def seed(port: int, path: str, value: str) -> None:
    """PUT value at path (the kv unikernel starts empty; the Python kv upstream is preloaded)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=value.encode(),
                                     method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
    except OSError as exc:
        raise procs.StartError(f"failed check: PUT {path}: {exc}") from exc


def systems_for(scenario: Scenario, names: list[str]) -> list[str]:
    """The systems a scenario runs: gateway-unikernel only (and always, with a gateway) in
    unikernel scenarios, where the others proxy to a backend doing the same job."""
    names = [n for n in names if not SYSTEMS[n].unikernel]
    # Features only nginx and the gateway have: haproxy and aiohttp would not do the same work.
    if scenario.tls or scenario.gzip or scenario.limit_req or scenario.rewrite \
            or scenario.load.scheme == "ws":
        names = [n for n in names if SYSTEMS[n].kind in ("nginx", "gateway")]
    if scenario.unikernel and any(SYSTEMS[n].kind == "gateway" for n in names):
        names.append("gateway-unikernel")
    return names


def certificate(workdir: str) -> tuple[str, str]:
    """A fresh self-signed-CA certificate for 127.0.0.1 (trustme): (cert file, key file)."""
    import trustme
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = os.path.join(workdir, "proxy.crt"), os.path.join(workdir, "proxy.key")
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    return cert, key


def client_command(scenario: Scenario, port: int, duration: float, script: str,
                   cpus: str | None) -> list[str]:
    """The load client's argv: wrk, h2load for the HTTP/2 scenarios, ws_load for WebSocket."""
    if scenario.load.client == "h2load":
        return h2load.command(scenario.load, port, duration, cpus)
    if scenario.load.scheme == "ws":
        return ws_load.command(scenario.load, port, duration, script, cpus)
    return wrk.command(scenario.load, port, duration, script, cpus)


def run_client(argv: list[str], duration: float) -> wrk.Result:
    """Run the argv client_command made (possibly behind taskset)."""
    return (h2load.run if "h2load" in argv else wrk.run)(argv, duration)


def measure(proc: procs.Proc, backend: procs.Proc, argv: list[str], duration: float) -> dict:
    """One wrk run against a system, with the system's and the backend's CPU time around it."""
    before = procs.cpu_seconds(proc.pid), procs.cpu_seconds(backend.pid)
    result = run_client(argv, duration)
    after = procs.cpu_seconds(proc.pid), procs.cpu_seconds(backend.pid)
    row = result.to_dict()
    row["cpu_s"] = round(after[0] - before[0], 3)
    row["backend_cpu_s"] = round(after[1] - before[1], 3)
    n = result.requests
    row["cpu_us_per_req"] = (after[0] - before[0]) * 1e6 / n if n else None
    row["backend_cpu_us_per_req"] = (after[1] - before[1]) * 1e6 / n if n else None
    return row


def run(scenario: Scenario, names: list[str], settings: Settings, where: Placement,
        workdir: str, log=print) -> dict:
    """Run scenario for the named systems; returns its JSON-ready record."""
    record = {"scenario": scenario.name, "title": scenario.title, "systems": [], "backend": {}}
    reason = scenario.unavailable()
    if reason:
        record["unavailable"] = reason
        log(f"[{scenario.name}] {reason}")
        return record

    if scenario.timing:
        try:
            record["timing"] = boot.measure(where, workdir, max(3, settings.rounds), log)
        except (procs.StartError, ValueError, OSError) as exc:
            record["error"] = f"gateway-unikernel: {exc}"
            log(f"[{scenario.name}] {record['error']}")
        return record
    names = systems_for(scenario, names)
    ports = [procs.free_port() for _ in range(scenario.upstreams)]
    try:
        backend, texts = backends.start(scenario.backend, ports, os.path.join(workdir, "backend"),
                                        where.backend)
    except procs.StartError as exc:
        record["error"] = f"backend {exc}"
        log(f"[{scenario.name}] backend {exc}")
        return record
    record["backend"] = {"kind": scenario.backend, "command": shlex.join(backend.argv),
                         "configs": texts}
    running: list[tuple[SystemResult, procs.Proc, int]] = []
    tls = certificate(workdir) if scenario.tls else None
    websocket = scenario.load.scheme == "ws"
    try:
        script = wrk.write_script(scenario.load, workdir)
        for name in names:
            result = SystemResult(name)
            record["systems"].append(result)
            port = procs.free_port()
            try:
                proc, result.configs = SYSTEMS[name].start(os.path.join(workdir, name), port,
                                                           ports, where, scenario.unikernel, tls,
                                                           scenario.limit_req, scenario.gzip,
                                                           upgrade=websocket, http2=scenario.http2,
                                                           rewrite=scenario.rewrite)
                result.command = shlex.join(proc.argv)
                running.append((result, proc, port))
                if scenario.seed and SYSTEMS[name].unikernel:
                    seed(port, *scenario.seed)
                sanity_check(port, scenario)
            except procs.StartError as exc:
                result.status = str(exc)
                log(f"[{scenario.name}] {name}: {exc}")
        for result, proc, port in list(running):
            if result.status != "ok":
                continue
            if settings.warmup:
                argv = client_command(scenario, port, settings.warmup, script, where.client)
                try:
                    run_client(argv, settings.warmup)
                except (ValueError, OSError, subprocess.SubprocessError) as exc:
                    result.status = f"failed warm-up: {exc}"
        # Interleaved rounds (ABCDABCD): drift on a shared machine hits every system alike.
        for round_no in range(settings.rounds):
            for result, proc, port in running:
                if result.status != "ok":
                    continue
                if proc.popen.poll() is not None:
                    result.status = f"exited during the run: {proc.first_stderr_line()}"
                    continue
                argv = client_command(scenario, port, settings.duration, script, where.client)
                record.setdefault("wrk_commands", {})[result.name] = shlex.join(argv)
                try:
                    row = measure(proc, backend, argv, settings.duration)
                except (ValueError, OSError, subprocess.SubprocessError) as exc:
                    result.status = f"failed run: {exc}"
                    continue
                row["round"] = round_no + 1
                if not scenario.latency:
                    # wrk times a pipelined batch as one request: its percentiles are not latencies.
                    row.update(p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
                result.rounds.append(row)
                log(f"[{scenario.name}] round {round_no + 1} {result.name}: "
                    f"{row['rps']:.0f} req/s, p99 {_fmt(row['p99_ms'])} ms, "
                    f"{_fmt(row['cpu_us_per_req'])} us CPU/req")
    finally:
        for result, proc, _ in running:
            procs.stop(proc)
            result.stderr = proc.stderr_head()
        procs.stop(backend)
    record["systems"] = [r.to_dict() for r in record["systems"]]
    return record


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
