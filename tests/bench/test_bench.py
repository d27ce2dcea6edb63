"""The benchmark harness: wrk output parsing, process handling, generated configs, a real run."""

import json
import os
import subprocess
import sys

import pytest

from bench import configs, procs, wrk

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SUMMARY = ('BENCH-JSON {"requests": 1000, "duration_us": 2000000, "bytes": 5000, '
           '"connect": 1, "read": 2, "write": 3, "status": 7, "timeout": 4, '
           '"p50_us": 1500, "p90_us": 2500, "p99_us": 9000, "max_us": 12000}')


def test_parse_reads_the_reporter_line():
    result = wrk.parse("Running 2s test @ http://127.0.0.1:1/\n" + SUMMARY + "\n")
    assert result.requests == 1000
    assert result.rps == 500.0
    assert (result.p50_ms, result.p99_ms) == (1.5, 9.0)
    assert result.non2xx == 7
    assert result.socket_errors == 1 + 2 + 3 + 4


def test_parse_without_summary_is_a_clear_error():
    with pytest.raises(ValueError, match="wrk printed no summary: unable to connect"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_command_pins_and_carries_headers(tmp_path):
    load = wrk.Load("/small", 10, headers=("Connection: close",), script="pipeline.lua")
    script = wrk.write_script(load, str(tmp_path))
    argv = wrk.command(load, 8080, 3, script, "1")
    assert argv[:3] == ["taskset", "-c", "1"]
    assert ["-H", "Connection: close"] == argv[argv.index("-H"):argv.index("-H") + 2]
    assert argv[-1] == "http://127.0.0.1:8080/small"
    text = open(script).read()
    assert "request = function" in text and "BENCH-JSON" in text


def test_failed_start_reports_first_error_line(tmp_path):
    code = "import sys; sys.stderr.write('note: starting\\nerror: cannot bind\\n'); sys.exit(3)"
    proc = procs.start("failing", [sys.executable, "-c", code], None, str(tmp_path))
    try:
        with pytest.raises(procs.StartError, match="^failed to start: error: cannot bind$"):
            procs.wait_port(proc, procs.free_port(), timeout=10)
    finally:
        procs.stop(proc)


def test_cpu_seconds_include_child_processes(tmp_path):
    # The parent sleeps; only its child burns CPU, which must still be counted.
    child = "sum(i * i for i in range(3_000_000)); print('done', flush=True); import time; time.sleep(60)"
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "p.wait()")
    proc = procs.start("tree", [sys.executable, "-c", parent], None, str(tmp_path))
    try:
        out = os.path.join(str(tmp_path), "tree.stdout")
        for _ in range(600):
            if proc.popen.poll() is not None or "done" in open(out).read():
                break
            subprocess.run(["sleep", "0.1"])
        assert "done" in open(out).read()
        assert len(procs.tree_pids(proc.pid)) == 2
        assert procs.cpu_seconds(proc.pid) >= 0.05
    finally:
        procs.stop(proc)
    assert proc.popen.poll() is not None


@pytest.mark.nginx
def test_generated_configs_are_valid_for_nginx_and_haproxy(tmp_path):
    os.makedirs(tmp_path / "temp")
    files = {
        "backend.conf": configs.backend_nginx([procs.free_port(), procs.free_port()], str(tmp_path)),
        "proxy.conf": configs.proxy(procs.free_port(), [procs.free_port()], "auto", nginx=True),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        done = subprocess.run(["/usr/sbin/nginx", "-t", "-p", f"{tmp_path}/",
                               "-c", str(tmp_path / name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    (tmp_path / "haproxy.cfg").write_text(configs.haproxy(procs.free_port(), [procs.free_port()], 1))
    done = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_scenario_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "bench", "--scenario", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: unknown scenario 'nope' (see --list)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.nginx
@pytest.mark.slow
def test_quick_run_against_nginx_writes_figures(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "small", "--systems", "nginx",
         "--duration", "1", "--rounds", "2", "--warmup", "1", "--out", str(tmp_path),
         "--no-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    [json_path] = list(tmp_path.glob("*-small-quick.json"))
    run = json.loads(json_path.read_text())
    [scenario] = run["scenarios"]
    [nginx] = scenario["systems"]
    assert nginx["status"] == "ok"
    assert len(nginx["rounds"]) == 2
    summary = nginx["summary"]
    assert summary["requests"] > 0 and summary["rps"] > 0
    assert summary["non2xx"] == 0 and summary["socket_errors"] == 0
    assert summary["cpu_us_per_req"] > 0 and summary["backend_cpu_us_per_req"] > 0
    assert "nginx -p" in nginx["command"] and "wrk -t1 -c64" in scenario["wrk_commands"]["nginx"]
    assert run["machine"]["versions"]["nginx"].startswith("nginx version")
    assert json_path.with_suffix(".png").stat().st_size > 0
    assert "| nginx |" in json_path.with_suffix(".md").read_text()


def test_unikernel_systems_join_only_unikernel_scenarios():
    from bench.runner import systems_for
    from bench.scenarios import SCENARIOS
    names = ["nginx", "gateway", "gateway-unikernel"]
    assert systems_for(SCENARIOS["small"], names) == ["nginx", "gateway"]
    assert systems_for(SCENARIOS["uk-echo"], names) == ["nginx", "gateway", "gateway-unikernel"]
    assert systems_for(SCENARIOS["uk-echo"], ["nginx"]) == ["nginx"]


def test_unikernel_probe_without_image_is_false():
    from bench.scenarios import unikernel_pass_ready
    assert unikernel_pass_ready("no-such-service") is False


def test_unikernel_scenarios_say_what_is_missing(monkeypatch):
    from bench import scenarios
    kv = scenarios.SCENARIOS["uk-kv"]
    boot = scenarios.SCENARIOS["uk-boot"]
    monkeypatch.setattr(scenarios, "unikernel_pass_ready", lambda service: False)
    assert kv.unavailable() == "not available yet: needs unikernel_pass (issue 5)"
    monkeypatch.setattr(scenarios, "unikernel_pass_ready", lambda service: True)
    assert kv.unavailable() is None and boot.unavailable() is None
    assert scenarios.SCENARIOS["small"].unavailable() is None


def test_kv_backend_answers_its_key_only(tmp_path):
    import urllib.error
    import urllib.request
    from bench import backends
    port = procs.free_port()
    proc, _ = backends.start("kv", [port], str(tmp_path), None)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{backends.KV_KEY}", timeout=10) as resp:
            assert resp.read() == backends.KV_VALUE.encode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    finally:
        procs.stop(proc)


def test_echo_backend_answers_with_the_uri(tmp_path):
    import urllib.request
    from bench import backends
    port = procs.free_port()
    proc, _ = backends.start("echo", [port], str(tmp_path), None)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/echo/abc?x=1", timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b"/echo/abc?x=1"
    finally:
        procs.stop(proc)


def test_report_tables_ratios_and_summary_section(tmp_path):
    from bench import report
    def system(name, rps, cpu, p99):
        summary = {"rps": rps, "p50_ms": 1.0, "p99_ms": p99, "cpu_us_per_req": cpu,
                   "non2xx": 0, "socket_errors": 0, "requests": 100}
        return {"name": name, "status": "ok", "command": f"{name} -c x", "configs": {},
                "stderr": [], "rounds": [], "summary": summary}
    run = {
        "date": "2026-01-01-0000", "set": "small", "command": "python -m bench",
        "machine": {"cores": 2, "usable_cores": 2, "cpu_model": "CPU", "kernel": "6",
                    "gateway_extensions": [],
                    "versions": {k: "v" for k in ("nginx", "haproxy", "wrk", "python", "uvloop",
                                                  "aiohttp")}},
        "placement": "proxy on CPU 0", "load_average": {"start": 0.5, "end": 0.7},
        "settings": {"duration": 1, "rounds": 1, "warmup": 0},
        "scenarios": [
            {"scenario": "small", "title": "t", "backend": {"command": "nginx"},
             "systems": [system("nginx", 1000.0, 10.0, 2.0), system("gateway", 900.0, 12.0, 3.0),
                         {"name": "haproxy", "status": "failed to start: boom", "command": "",
                          "configs": {}, "stderr": [], "rounds": [], "summary": {}}]},
            {"scenario": "uk-echo", "title": "u", "systems": [], "backend": {},
             "unavailable": "not available yet: needs unikernel_pass (issue 5)"},
            {"scenario": "uk-boot", "title": "b", "systems": [], "backend": {},
             "timing": {"command": "gateway -c x", "configs": {}, "start_ms": [200.0, 300.0],
                        "restart_ms": [30.0, 50.0],
                        "summary": {"start_ms": 250.0, "restart_ms": 40.0}}},
        ],
    }
    paths = report.write(run, str(tmp_path))
    text = open(paths["md"]).read()
    assert "gateway / nginx: CPU/req 1.20x, req/s 0.90x, p99 1.50x" in text
    assert "| haproxy | - | - | - | - | - | - | - | failed to start: boom |" in text
    assert "not available yet: needs unikernel_pass (issue 5)" in text
    assert "| kill -9 of the QEMU worker to next answer | 40 | 30, 50 |" in text
    assert os.path.getsize(paths["png"]) > 0
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Results\n\nkept\n\n" + report.SUMMARY_START + "\nold\n"
                          + report.SUMMARY_END + "\n\ntail kept\n")
    report.update_summary(run, paths, str(results_md))
    updated = results_md.read_text()
    assert "kept" in updated and "tail kept" in updated and "\nold\n" not in updated
    assert "## Latest summary: 2026-01-01-0000 (small)" in updated


@pytest.mark.qemu
@pytest.mark.slow
def test_quick_run_of_the_unikernel_echo_route(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "uk-echo", "--systems", "gateway",
         "--duration", "1", "--rounds", "1", "--warmup", "1", "--out", str(tmp_path),
         "--no-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    [json_path] = list(tmp_path.glob("*-uk-echo-quick.json"))
    [scenario] = json.loads(json_path.read_text())["scenarios"]
    systems = {s["name"]: s for s in scenario["systems"]}
    assert set(systems) == {"gateway", "gateway-unikernel"}
    unikernel = systems["gateway-unikernel"]
    assert unikernel["status"] == "ok", unikernel["stderr"]
    assert "unikernel_pass echo;" in unikernel["configs"]["gateway.conf"]
    assert unikernel["summary"]["requests"] > 0
    assert unikernel["summary"]["non2xx"] == 0 and unikernel["summary"]["socket_errors"] == 0


def test_instruction_counts_for_nginx_and_the_relay_floor():
    """bench.instructions under valgrind: a count per request for each system asked for."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--systems", "nginx,uvloop-relay",
         "--requests", "100,400"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {}
    for line in done.stdout.splitlines()[1:]:
        name, value = line.split()
        counts[name] = int(value.replace(",", ""))
    assert set(counts) == {"nginx", "uvloop-relay"}
    # Thousands of instructions for one proxied request, never zero or negative.
    assert all(1_000 < value < 1_000_000 for value in counts.values()), counts


@pytest.mark.qemu
def test_idle_workers_bench_checks_every_instance_and_prints_its_goals():
    done = subprocess.run(
        [sys.executable, "-m", "bench.idle_workers", "--instances", "4", "--rounds", "1",
         "--duration", "1", "--idle-seconds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in done.stdout.splitlines()
             if line.startswith("| ")}
    assert table["instances that answered 3N round-robin requests"][0] == "4 of 4"
    assert table["failed requests (all rounds)"][0] == "0"
    assert table["memory per instance (PSS)"][0].endswith("MiB")


@pytest.mark.qemu
def test_boot_bench_measures_the_spare_restart_and_resume_paths():
    done = subprocess.run(
        [sys.executable, "-m", "bench.unikernel_boot", "--repeats", "1", "--idle-seconds", "0.5",
         "--transport", "socketpair"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in done.stdout.splitlines()
             if line.startswith("| ")}
    for figure in ("gateway start to first unikernel answer",
                   "kill -9 to the route answering again, a spare standing by",
                   "kill -9 of both instances to a restarted one answering (the path without a spare)",
                   "paused QEMU resumed to first answer (`prestart`)",
                   "kill -9, no spare, a paused QEMU ready: the route answering again",
                   "kill -9, no spare, no paused QEMU (`prestart 0`, same gateway)"):
        assert float(table[figure][0].removesuffix(" ms")) > 0, figure


@pytest.mark.nginx
def test_upgrade_config_is_valid_for_nginx(tmp_path):
    os.makedirs(tmp_path / "temp")
    (tmp_path / "proxy.conf").write_text(
        configs.proxy(procs.free_port(), [procs.free_port()], "1", nginx=True, upgrade=True))
    done = subprocess.run(["/usr/sbin/nginx", "-t", "-p", f"{tmp_path}/",
                           "-c", str(tmp_path / "proxy.conf")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_quick_websocket_echo_run_through_the_gateway(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "ws-echo", "--systems",
         "gateway,haproxy", "--duration", "1", "--rounds", "1", "--warmup", "0", "--out",
         str(tmp_path), "--no-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    [json_path] = list(tmp_path.glob("*-ws-echo-quick.json"))
    [scenario] = json.loads(json_path.read_text())["scenarios"]
    [gateway] = scenario["systems"]         # HAProxy does not join the WebSocket scenario
    assert gateway["name"] == "gateway" and gateway["status"] == "ok"
    summary = gateway["summary"]
    assert summary["requests"] > 0 and summary["socket_errors"] == 0
    assert summary["cpu_us_per_req"] > 0
    assert "bench.ws_load" in scenario["wrk_commands"]["gateway"]


@pytest.mark.nginx
@pytest.mark.slow
def test_quick_rewrite_run_through_nginx_and_the_gateway(tmp_path):
    """The map, if and rewrites config loads in both and every request is proxied (200)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "rewrite", "--systems",
         "nginx,gateway", "--duration", "1", "--rounds", "1", "--warmup", "0", "--out",
         str(tmp_path), "--no-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    [json_path] = list(tmp_path.glob("*-rewrite-quick.json"))
    [scenario] = json.loads(json_path.read_text())["scenarios"]
    assert [s["name"] for s in scenario["systems"]] == ["nginx", "gateway"]
    for system in scenario["systems"]:
        assert system["status"] == "ok", system
        assert "rewrite ^/(small)$ /$1 break;" in "".join(system["configs"].values())
        summary = system["summary"]
        assert summary["requests"] > 0 and summary["non2xx"] == 0, system
