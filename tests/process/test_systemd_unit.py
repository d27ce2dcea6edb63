"""deploy/gateway.service: its commands, run in order as systemd runs them, start, reload and stop a
real gateway (paths moved into a temporary folder; systemd itself is not needed)."""

import configparser
import os
import shlex
import subprocess

from tests.process.harness import REPO, alive, free_port, get, wait_for

UNIT = os.path.join(REPO, "deploy", "gateway.service")
GATEWAY = os.path.join(REPO, ".venv", "bin", "gateway")


def commands(tmp_path):
    """{key: [argv, ...]} of the unit's Exec lines with its paths moved under tmp_path."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    moves = {"/opt/gateway/.venv/bin/gateway": GATEWAY, "/var/lib/gateway": str(tmp_path / "prefix"),
             "/etc/gateway/gateway.conf": str(tmp_path / "gateway.conf"), "/run/gateway.pid": str(tmp_path / "gw.pid")}
    out = {}
    with open(UNIT) as fh:
        for line in fh:
            key, sep, value = line.strip().partition("=")
            if not sep or not key.startswith("Exec"):
                continue
            for old, new in moves.items():
                value = value.replace(old, new)
            out.setdefault(key, []).append(shlex.split(value.lstrip("-")))
    assert unit["Service"]["Type"] == "forking" and unit["Service"]["PIDFile"] == "/run/gateway.pid"
    return out


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, (argv, done.stdout, done.stderr)


def test_unit_starts_reloads_and_stops_the_gateway(tmp_path):
    port = free_port()
    conf = tmp_path / "gateway.conf"
    conf.write_text("events {}\nhttp { server { listen 127.0.0.1:%d; location / { return 200 \"v1\"; } } }\n"
                    % port)
    exec_ = commands(tmp_path)
    assert set(exec_) == {"ExecStartPre", "ExecStart", "ExecReload", "ExecStop"}
    for argv in exec_["ExecStartPre"] + exec_["ExecStart"]:
        run(argv)
    pid = int(wait_for(lambda: (tmp_path / "gw.pid").exists() and (tmp_path / "gw.pid").read_text(),
                       "the pid file"))
    try:
        assert get(port) == (200, b"v1")
        conf.write_text(conf.read_text().replace('"v1"', '"v2"'))
        for argv in exec_["ExecReload"]:
            run(argv)
        wait_for(lambda: get(port) == (200, b"v2"), "the reloaded configuration")
        # A broken configuration is refused by the reload's check; the old one keeps serving.
        conf.write_text(conf.read_text().replace("return", "retrun"))
        refused = subprocess.run(exec_["ExecReload"][0], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and 'unknown directive "retrun"' in refused.stderr
        assert get(port) == (200, b"v2")
        for argv in exec_["ExecStop"]:
            run(argv)
        assert not alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, 9)
