"""The ``gateway`` command line as scripts see it: flags, messages, exit codes (real processes)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest

import gateway
from gateway.config import DEFAULT_CONFIG

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = """\
worker_processes 1;
events { }
http {
    server { listen 127.0.0.1:8080; location / { return 200 "hi"; } }
}
"""


def run(*args: str, cwd: str | None = None, command=None) -> subprocess.CompletedProcess:
    """Run ``python -m gateway ARGS`` (or ``command``) to completion."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = (command or [sys.executable, "-m", "gateway"]) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


@pytest.fixture
def conf(tmp_path):
    """A valid config file in a fresh prefix."""
    path = tmp_path / "gateway.conf"
    path.write_text(GOOD)
    return str(path)


# Help and version -------------------------------------------------------------

def test_help_documents_every_flag_and_the_default_prefix():
    result = run("-h")
    assert result.returncode == 0
    assert result.stderr.startswith(
        f"gateway version: gateway/{gateway.__version__}\nUsage: gateway")
    for flag in ("-?,-h,--help", "-v,--version", "-V", "-t", "-T", "-q", "-s signal", "-p prefix",
                 "-e filename", "-c filename", "-g directives"):
        assert f"  {flag} " in result.stderr
    assert "default: the current directory" in result.stderr
    assert run("-?").stderr == result.stderr
    assert run("--help").stderr == result.stderr


def test_v_prints_the_version():
    result = run("-v")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "", f"gateway version: gateway/{gateway.__version__}\n")


def test_long_version_is_v():
    assert run("--version").stderr == run("-v").stderr


def test_capital_v_prints_build_information():
    import uvloop

    result = run("-V")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert lines[0] == f"gateway version: gateway/{gateway.__version__}"
    assert lines[1] == f"built with Python {platform.python_version()}, uvloop {uvloop.__version__}"
    assert lines[2].startswith("Cython extensions: ")
    for pyx in os.listdir(os.path.join(REPO, "_fastpath")):
        if pyx.endswith(".pyx"):
            assert pyx[:-4] + " (" in lines[2]


def test_console_script_is_the_same_command():
    script = shutil.which("gateway", path=os.path.dirname(sys.executable))
    assert script is not None, "the console script is installed with the package"
    assert run("-v", command=[script]).stderr == run("-v").stderr


# Bad command lines --------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["-x"], 'invalid option: "x"'),
    (["-tx"], 'invalid option: "x"'),
    (["foo"], 'invalid option: "foo"'),
    (["-c"], 'option "-c" requires file name'),
    (["-p"], 'option "-p" requires directory name'),
    (["-e"], 'option "-e" requires file name'),
    (["-g"], 'option "-g" requires parameter'),
    (["-s"], 'option "-s" requires parameter'),
    (["-s", "restart"], 'invalid option: "-s restart"'),
])
def test_bad_command_lines_get_one_line_and_exit_1(args, message):
    result = run(*args)
    assert (result.returncode, result.stderr) == (1, f"gateway: {message}\n")


@pytest.mark.nginx
@pytest.mark.parametrize("args", [["-x"], ["foo"], ["-c"], ["-p"], ["-g"], ["-s"],
                                  ["-s", "restart"]])
def test_bad_command_lines_match_nginx(args):
    nginx = subprocess.run(["nginx", *args], capture_output=True, text=True, timeout=30)
    ours = run(*args)
    assert ours.returncode == nginx.returncode == 1
    assert ours.stderr.replace("gateway: ", "", 1) == nginx.stderr.replace("nginx: ", "", 1)


# -t, -T, -q --------------------------------------------------------------------

def test_t_on_a_good_config(conf):
    result = run("-t", "-c", conf)
    assert result.returncode == 0
    assert result.stderr == (f"gateway: the configuration file {conf} syntax is ok\n"
                             f"gateway: configuration file {conf} test is successful\n")
    assert result.stdout == ""


def test_q_silences_the_success_lines(conf):
    result = run("-tq", "-c", conf)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_t_on_a_bad_config(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("events { }\nbogus_directive on;\n")
    result = run("-q", "-t", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr == (f'gateway: [emerg] unknown directive "bogus_directive" in {path}:2\n'
                             f"gateway: configuration file {path} test failed\n")


def test_t_on_a_missing_file(tmp_path):
    path = tmp_path / "missing.conf"
    result = run("-t", "-c", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [f'gateway: [emerg] open() "{path}" failed (2: No such file or directory)',
                     f"gateway: configuration file {path} test failed"]


def test_t_relative_c_is_under_the_prefix(tmp_path, conf):
    result = run("-t", "-p", str(tmp_path), "-c", "gateway.conf", cwd="/")
    assert result.returncode == 0, result.stderr
    assert f"gateway: the configuration file {conf} syntax is ok" in result.stderr


def test_t_without_c_checks_the_built_in_config(tmp_path):
    result = run("-t", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"gateway: the configuration file {DEFAULT_CONFIG} syntax is ok\n"
                             f"gateway: configuration file {DEFAULT_CONFIG} test is successful\n")


def test_t_applies_g_directives(conf):
    assert run("-t", "-c", conf, "-g", "daemon off;").returncode == 0
    result = run("-t", "-c", conf, "-g", "bogus_directive on;")
    assert result.returncode == 1
    assert result.stderr.startswith('gateway: [emerg] unknown directive "bogus_directive"')


def test_t_shows_config_warnings(tmp_path):
    path = tmp_path / "warn.conf"
    path.write_text("events { }\nhttp { sendfile on; }\n")
    result = run("-t", "-c", str(path))
    assert result.returncode == 0
    assert result.stderr.splitlines()[0] == (
        f'gateway: [warn] "sendfile" directive is accepted but not acted on in {path}:2')


def test_capital_t_dumps_the_configuration(conf):
    result = run("-T", "-c", conf)
    assert result.returncode == 0
    assert result.stdout.startswith(f"# configuration file {conf}:\n")
    assert GOOD in result.stdout
    assert result.stderr.endswith(f"gateway: configuration file {conf} test is successful\n")
    quiet = run("-Tq", "-c", conf)
    assert (quiet.stdout, quiet.stderr) == (result.stdout, "")


def test_a_bad_config_at_start_is_one_line_not_a_traceback(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("events { }\nhttp { server { listen 127.0.0.1:notaport; } }\n")
    result = run("-c", str(path), "-g", "daemon off;")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("gateway: [emerg] ")
    assert "Traceback" not in result.stderr


# -s ------------------------------------------------------------------------------

def test_s_without_a_pid_file(tmp_path, conf):
    pid_file = tmp_path / "logs" / "gateway.pid"
    result = run("-s", "reload", "-p", str(tmp_path), "-c", conf)
    assert (result.returncode, result.stderr) == (
        1, f'gateway: [error] open() "{pid_file}" failed (2: No such file or directory)\n')


def test_s_reads_the_pid_directive(tmp_path):
    pid_file = tmp_path / "run" / "my.pid"
    path = tmp_path / "gateway.conf"
    path.write_text(f"pid {pid_file};\n" + GOOD)
    result = run("-s", "stop", "-c", str(path))
    assert (result.returncode, result.stderr) == (
        1, f'gateway: [error] open() "{pid_file}" failed (2: No such file or directory)\n')


@pytest.mark.parametrize("content, shown", [("abc\n", "abc"), ("", ""), ("-5\n", "-5")])
def test_s_with_an_invalid_pid(tmp_path, conf, content, shown):
    pid_file = tmp_path / "logs" / "gateway.pid"
    pid_file.parent.mkdir()
    pid_file.write_text(content)
    result = run("-s", "quit", "-p", str(tmp_path), "-c", conf)
    assert (result.returncode, result.stderr) == (
        1, f'gateway: [error] invalid PID number "{shown}" in "{pid_file}"\n')


def test_s_with_a_stale_pid(tmp_path, conf):
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file = tmp_path / "logs" / "gateway.pid"
    pid_file.parent.mkdir()
    pid_file.write_text(f"{gone.pid}\n")
    result = run("-s", "reopen", "-p", str(tmp_path), "-c", conf)
    assert (result.returncode, result.stderr) == (
        1, f"gateway: [alert] kill({gone.pid}, 10) failed (3: No such process)\n")


def test_s_sends_the_named_signal(tmp_path, conf):
    # A stand-in process records the signal it gets; it is stopped by pid below.
    catcher = subprocess.Popen(
        [sys.executable, "-c",
         "import signal,sys\n"
         "signal.signal(signal.SIGHUP, lambda *a: (print('HUP', flush=True), sys.exit(0)))\n"
         "print('ready', flush=True)\n"
         "signal.pause()\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert catcher.stdout.readline() == "ready\n"
        pid_file = tmp_path / "logs" / "gateway.pid"
        pid_file.parent.mkdir()
        pid_file.write_text(f"{catcher.pid}\n")
        result = run("-s", "reload", "-p", str(tmp_path), "-c", conf)
        assert (result.returncode, result.stderr) == (0, "")
        assert catcher.stdout.readline() == "HUP\n"
    finally:
        catcher.kill()
        catcher.wait()
        catcher.stdout.close()
