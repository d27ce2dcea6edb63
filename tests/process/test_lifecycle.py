"""The gateway as a user runs it: start, serve, reload, reopen, respawn, stop, as real processes."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from tests.process.harness import (
    alive, children, free_port, get, status_field, try_get, wait_for)

pytestmark = pytest.mark.slow


def test_foreground_serves_writes_pid_and_stops(gateway):
    gateway.write_config(workers=2)
    master = gateway.start_foreground()
    assert gateway.read_pid() == master
    assert get(gateway.port) == (200, b"hi")
    workers = wait_for(lambda: len(gateway.workers(master)) == 2 and gateway.workers(master),
                       "two workers")
    # A fresh child names itself a moment after fork: wait for it, do not race it.
    wait_for(lambda: all(status_field(pid, "Name") == "gateway: worker" for pid in workers),
             "the workers' names")
    assert status_field(master, "Name") == "gateway: master"

    result = gateway.command("-s", "stop")
    assert result.returncode == 0, result.stderr
    gateway.wait_exit(master)
    assert gateway.foreground.returncode == 0
    assert not os.path.exists(gateway.pid_file)
    assert not any(alive(pid) for pid in workers)
    assert try_get(gateway.port) is None
    assert f"start worker process {workers[0]}" in gateway.log_text()


def test_daemon_detaches_and_quits(gateway):
    gateway.write_config(workers=1)
    master = gateway.start_daemon()
    # A new session it does not lead (double fork): it can never acquire a terminal.
    assert os.getsid(master) not in (os.getsid(0), master)
    assert master not in children(os.getpid())
    assert get(gateway.port) == (200, b"hi")

    result = gateway.command("-s", "quit")
    assert result.returncode == 0, result.stderr
    gateway.wait_exit(master)
    assert not os.path.exists(gateway.pid_file)


def test_daemon_reports_a_startup_failure(gateway):
    gateway.write_config(main=f"pid {gateway.prefix}/missing/gateway.pid;")
    result = gateway.command()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f'gateway: [emerg] open() "{gateway.prefix}/missing/gateway.pid" failed '
        "(2: No such file or directory)")
    assert try_get(gateway.port) is None


def test_reload_applies_a_changed_config(gateway):
    gateway.write_config(text="one")
    master = gateway.start_foreground()
    old_workers = gateway.workers(master)
    assert get(gateway.port) == (200, b"one")

    gateway.write_config(text="two")
    result = gateway.command("-s", "reload")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not any(alive(pid) for pid in old_workers), "old workers to exit")
    assert get(gateway.port) == (200, b"two")
    new_workers = gateway.workers(master)
    assert len(new_workers) == 2 and not set(new_workers) & set(old_workers)
    assert "reconfiguring" in gateway.log_text()
    assert alive(master) and gateway.read_pid() == master


def listen_backlogs(port: int) -> list[int]:
    """The accept-queue limit of every socket listening on ``port`` (ss's Send-Q column)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines()]


@pytest.mark.parametrize("reuseport", ["", " reuseport"])
def test_workers_listen_with_the_configured_backlog_also_after_a_reload(gateway, reuseport):
    # uvloop calls listen() again in each worker: with 511 there, backlog=N would be lost.
    def serve(backlog):
        gateway.write_config(http=f"server {{ listen 127.0.0.1:{gateway.port} backlog={backlog}"
                                  f"{reuseport}; location / {{ return 200 \"{backlog}\"; }} }}")
    serve(1234)
    master = gateway.start_foreground()
    old_workers = gateway.workers(master)
    assert get(gateway.port) == (200, b"1234")
    assert listen_backlogs(gateway.port) == [1234] * (2 if reuseport else 1)

    serve(777)
    assert gateway.command("-s", "reload").returncode == 0
    wait_for(lambda: not any(alive(pid) for pid in old_workers), "old workers to exit")
    assert get(gateway.port) == (200, b"777")
    assert listen_backlogs(gateway.port) == [777] * (2 if reuseport else 1)


def test_reload_with_an_invalid_config_keeps_the_old_one(gateway):
    gateway.write_config(text="one")
    master = gateway.start_foreground()
    workers = gateway.workers(master)
    with open(gateway.conf, "a") as file:
        file.write("bogus_directive on;\n")

    # `-s` reads the config first, so like nginx it refuses to signal with a broken one...
    result = gateway.command("-s", "reload")
    assert result.returncode == 1
    assert 'gateway: [emerg] unknown directive "bogus_directive"' in result.stderr

    # ...and a HUP sent anyway is refused by the master, which keeps serving the old config.
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: "the running one stays" in gateway.log_text(), "the reload to be refused")
    text = gateway.log_text()
    assert "[emerg]" in text and 'unknown directive "bogus_directive"' in text
    assert get(gateway.port) == (200, b"one")
    assert gateway.workers(master) == workers


def test_no_request_fails_across_reloads(gateway):
    gateway.write_config(text="v0")
    master = gateway.start_foreground()
    stop = threading.Event()
    failures, answers = [], []

    def client():
        while not stop.is_set():
            try:
                answers.append(get(gateway.port))
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for version in range(1, 4):
            before = len(answers)
            gateway.write_config(text=f"v{version}")
            os.kill(master, signal.SIGHUP)
            wait_for(lambda: (200, f"v{version}".encode()) in answers[before:],
                     f"v{version} to be served")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert {status for status, _ in answers} == {200}


def test_quit_waits_for_an_in_flight_request(gateway, slow_upstream):
    upstream_port, upstream = slow_upstream
    gateway.write_config(workers=1, http=(
        f"server {{ listen 127.0.0.1:{gateway.port}; "
        f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }} }}"))
    master = gateway.start_foreground()
    result = {}
    thread = threading.Thread(target=lambda: result.update(answer=get(gateway.port, "/slow")))
    thread.start()
    try:
        assert upstream.stdout.readline().strip() == "received"
        assert gateway.command("-s", "quit").returncode == 0
        thread.join(timeout=30)
    finally:
        thread.join()
    assert result["answer"] == (200, b"slow done")
    gateway.wait_exit(master)
    assert gateway.foreground.returncode == 0
    assert not os.path.exists(gateway.pid_file)


def test_stop_does_not_wait_for_an_in_flight_request(gateway, slow_upstream):
    upstream_port, upstream = slow_upstream
    gateway.write_config(workers=1, http=(
        f"server {{ listen 127.0.0.1:{gateway.port}; "
        f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }} }}"))
    master = gateway.start_foreground()
    result = {}

    def slow_request():
        try:
            result["answer"] = get(gateway.port, "/slow")
        except Exception as exc:     # the connection is cut: that is the point
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert upstream.stdout.readline().strip() == "received"
        assert gateway.command("-s", "stop").returncode == 0
        gateway.wait_exit(master)
    finally:
        thread.join()
    assert "answer" not in result
    assert not os.path.exists(gateway.pid_file)


def test_reopen_after_the_logs_were_moved(gateway):
    access_log = os.path.join(gateway.prefix, "logs", "access.log")
    gateway.write_config(http=(
        f"server {{ listen 127.0.0.1:{gateway.port}; access_log {access_log}; "
        f'location / {{ return 200 "hi"; }} }}'))
    master = gateway.start_foreground()
    assert get(gateway.port, "/first") == (200, b"hi")
    wait_for(lambda: os.path.exists(access_log) and "/first" in open(access_log).read(),
             "the first access log line")
    shutil.move(gateway.error_log, gateway.error_log + ".1")
    shutil.move(access_log, access_log + ".1")

    old_log = gateway.error_log + ".1"
    assert gateway.command("-s", "reopen").returncode == 0
    # master + 2 workers each say "reopening logs" before reopening, so into the old file
    wait_for(lambda: open(old_log).read().count("reopening logs") == 3, "the first reopen")
    assert gateway.command("-s", "reopen").returncode == 0
    wait_for(lambda: gateway.log_text().count("reopening logs") == 3,
             "master and workers to write to the new error log")
    assert get(gateway.port, "/second") == (200, b"hi")
    wait_for(lambda: os.path.exists(access_log) and "/second" in open(access_log).read(),
             "the request in the new access log")
    with open(access_log + ".1") as file:
        assert "/second" not in file.read()
    assert alive(master)


def test_a_killed_worker_is_respawned(gateway):
    gateway.write_config(workers=2)
    master = gateway.start_foreground()
    workers = wait_for(lambda: len(gateway.workers(master)) == 2 and gateway.workers(master),
                       "two workers")
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: len(gateway.workers(master)) == 2
                        and victim not in gateway.workers(master) and gateway.workers(master),
                        "a replacement worker")
    assert workers[1] in replaced
    assert f"[alert] {master}#0: worker process {victim} exited on signal 9" in gateway.log_text()
    assert get(gateway.port) == (200, b"hi")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_directive_drops_worker_privileges(gateway):
    gateway.write_config(main="user nobody;")
    master = gateway.start_foreground()
    workers = gateway.workers(master)
    assert len(workers) == 2
    # Each worker switches user once its app is built; the first may answer before the second.
    wait_for(lambda: all(status_field(pid, "Uid").split() == ["65534"] * 4 for pid in workers),
             "both workers to run as nobody")
    for pid in workers:
        assert status_field(pid, "Gid").split() == ["65534"] * 4
        assert status_field(pid, "Groups") == "65534"
    assert status_field(master, "Uid").split()[0] == "0"
    assert get(gateway.port) == (200, b"hi")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_unprivileged_workers_reopen_their_logs(gateway):
    # pytest's own temporary folders are closed to nobody: use a world-readable one.
    logs = tempfile.mkdtemp(prefix="gateway-logs-")
    try:
        os.chmod(logs, 0o755)
        access_log = os.path.join(logs, "access.log")
        gateway.error_log = os.path.join(logs, "error.log")
        gateway.write_config(main="user nobody;", http=(
            f"server {{ listen 127.0.0.1:{gateway.port}; access_log {access_log}; "
            f'location / {{ return 200 "hi"; }} }}'))
        master = gateway.start_foreground()
        assert get(gateway.port, "/first") == (200, b"hi")
        shutil.move(access_log, access_log + ".1")
        assert gateway.command("-s", "reopen").returncode == 0
        wait_for(lambda: os.path.exists(access_log), "the master to create the new log")
        assert os.stat(access_log).st_uid == 65534
        wait_for(lambda: gateway.log_text().count("reopening logs") == 3, "the workers to reopen")
        assert get(gateway.port, "/second") == (200, b"hi")
        wait_for(lambda: "/second" in open(access_log).read(), "the request in the new log")
        assert "alert" not in gateway.log_text()
        assert alive(master)
    finally:
        shutil.rmtree(logs)


def test_master_process_off_serves_in_one_process(gateway):
    gateway.write_config(main="master_process off;")
    pid = gateway.start_foreground()
    assert gateway.read_pid() == pid
    assert children(pid) == []
    assert get(gateway.port) == (200, b"hi")
    assert gateway.command("-s", "quit").returncode == 0
    gateway.wait_exit(pid)
    assert not os.path.exists(gateway.pid_file)


def test_reuseport_gives_each_worker_its_own_socket(gateway):
    gateway.write_config(workers=2, http=(
        f"server {{ listen 127.0.0.1:{gateway.port} reuseport; "
        f'location / {{ return 200 "hi"; }} }}'))
    master = gateway.start_foreground()
    assert listening_sockets(gateway.port) == 2
    assert get(gateway.port) == (200, b"hi")
    gateway.write_config(workers=2, text="again", http=(
        f"server {{ listen 127.0.0.1:{gateway.port} reuseport; "
        f'location / {{ return 200 "again"; }} }}'))
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: try_get(gateway.port) == (200, b"again"), "the reloaded config")
    assert listening_sockets(gateway.port) == 2


def test_a_busy_port_is_one_clear_error(gateway):
    gateway.write_config()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", gateway.port))
        busy.listen()
        result = gateway.command("-g", "daemon off;")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"gateway: [emerg] bind() to 127.0.0.1:{gateway.port} failed (98: Address already in use)")
    assert not os.path.exists(gateway.pid_file)


def test_config_warnings_go_to_the_error_log(gateway):
    gateway.write_config(main="", http=(
        f"sendfile on; server {{ listen 127.0.0.1:{gateway.port}; "
        f'location / {{ return 200 "hi"; }} }}'))
    gateway.start_foreground()
    text = gateway.log_text()
    assert text.count('"sendfile" directive is accepted but not acted on') == 1
    assert '[warn]' in text


def test_missing_uvloop_is_one_clear_error(gateway, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "uvloop.py").write_text("raise ImportError('No module named uvloop')\n")
    gateway.write_config()
    env = gateway.env()
    env["PYTHONPATH"] = f"{shadow}{os.pathsep}{env['PYTHONPATH']}"
    result = gateway.command("-g", "daemon off;", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "gateway: [emerg] uvloop is required but cannot be imported")
    assert "Traceback" not in result.stderr


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on 127.0.0.1:port (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as file:
        return sum(1 for line in file.readlines()[1:]
                   if line.split()[1] == wanted and line.split()[3] == "0A")


def test_e_names_the_error_log_when_the_config_has_none(gateway):
    busy_log = os.path.join(gateway.prefix, "startup.log")
    with open(gateway.conf, "w") as file:
        file.write("events { }\nhttp { access_log off; server { listen 127.0.0.1:%d; } }\n"
                   % gateway.port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", gateway.port))
        busy.listen()
        result = gateway.command("-g", "daemon off;", "-e", busy_log)
    assert result.returncode == 1
    message = f"bind() to 127.0.0.1:{gateway.port} failed (98: Address already in use)"
    assert result.stderr.strip().splitlines()[-1] == f"gateway: [emerg] {message}"
    with open(busy_log) as file:
        last = file.read().splitlines()[-1]
    assert " [emerg] " in last and last.endswith(f"#0: {message}")


def test_hup_without_a_master_is_ignored_with_a_warning(gateway):
    gateway.write_config(main="master_process off;", text="one")
    pid = gateway.start_foreground()
    gateway.write_config(main="master_process off;", text="two")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: 'reload is not supported with "master_process off"' in gateway.log_text(),
             "the warning")
    assert get(gateway.port) == (200, b"one")


def failing_env(gateway) -> dict:
    env = gateway.env()
    env["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + env["PYTHONPATH"]
    env["GATEWAY_WORKER_APP"] = "failing_app:FailingApp"
    return env


def test_workers_that_cannot_start_end_the_daemon_with_an_error(gateway):
    open(os.path.join(gateway.prefix, "fail-start"), "w").close()
    gateway.write_config()
    result = gateway.command(env=failing_env(gateway))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"gateway: [emerg] no worker process is left, exiting (see {gateway.error_log})")
    assert "[emerg]" in gateway.log_text() and "fail-start marker present" in gateway.log_text()
    assert "cannot be respawned" in gateway.log_text()
    assert not os.path.exists(gateway.pid_file)


def test_a_reload_whose_workers_cannot_start_keeps_the_old_ones(gateway):
    gateway.write_config(text="one")
    master = gateway.start_foreground(env=failing_env(gateway))
    workers = gateway.workers(master)
    wait_for(lambda: len(glob.glob(os.path.join(gateway.prefix, "started.*"))) == len(workers),
             "every worker to be past its start")

    open(os.path.join(gateway.prefix, "fail-start"), "w").close()
    gateway.write_config(text="two")
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: "new worker processes failed to start" in gateway.log_text(),
             "the reload to be abandoned")
    assert get(gateway.port) == (200, b"one")
    assert gateway.workers(master) == workers
    assert alive(master)


def test_workers_leave_when_the_master_is_killed(gateway):
    gateway.write_config(workers=2)
    master = gateway.start_foreground()
    workers = gateway.workers(master)
    os.kill(master, signal.SIGKILL)
    gateway.wait_exit(master)
    wait_for(lambda: not any(alive(pid) for pid in workers), "orphaned workers to exit")


def test_reload_opens_new_listeners_and_closes_removed_ones(gateway):
    gateway.write_config(workers=1)
    master = gateway.start_foreground()
    second = free_port()
    gateway.write_config(workers=3, http=(
        f"server {{ listen 127.0.0.1:{second}; location / {{ return 200 \"second\"; }} }}"))
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: try_get(second) == (200, b"second"), "the new listener")
    wait_for(lambda: len(gateway.workers(master)) == 3, "three workers")
    wait_for(lambda: try_get(gateway.port) is None, "the removed listener to close")


def test_worker_shutdown_timeout_cuts_a_graceful_quit_short(gateway, slow_upstream):
    upstream_port, upstream = slow_upstream
    gateway.write_config(workers=1, main="worker_shutdown_timeout 300ms;", http=(
        f"server {{ listen 127.0.0.1:{gateway.port}; "
        f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }} }}"))
    master = gateway.start_foreground()
    result = {}

    def slow_request():
        try:
            result["answer"] = get(gateway.port, "/slow")
        except Exception as exc:     # the connection is cut when the time is up
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert upstream.stdout.readline().strip() == "received"
        assert gateway.command("-s", "quit").returncode == 0
        gateway.wait_exit(master)
    finally:
        thread.join()
    # The upstream answers after 2 s; the worker gave up on the connection after 0.3 s.
    assert "answer" not in result
    assert "worker_shutdown_timeout expired" in gateway.log_text()


def test_worker_rlimit_nofile_sets_each_workers_limit(gateway):
    gateway.write_config(workers=2, main="worker_rlimit_nofile 3333;")
    master = gateway.start_foreground()
    workers = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(gateway.workers(master)),
                       "two workers")
    for pid in workers:
        with open(f"/proc/{pid}/limits") as fh:
            line = next(line for line in fh if line.startswith("Max open files"))
        assert line.split()[3:5] == ["3333", "3333"], line
    with open(f"/proc/{master}/limits") as fh:      # the master keeps its own, as nginx's does
        assert "3333" not in next(line for line in fh if line.startswith("Max open files"))


def test_term_during_a_graceful_quit_stops_at_once(gateway, slow_upstream):
    upstream_port, upstream = slow_upstream
    gateway.write_config(workers=1, http=(
        f"server {{ listen 127.0.0.1:{gateway.port}; "
        f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }} }}"))
    master = gateway.start_foreground()
    result = {}

    def slow_request():
        try:
            result["answer"] = get(gateway.port, "/slow")
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert upstream.stdout.readline().strip() == "received"
        os.kill(master, signal.SIGQUIT)
        wait_for(lambda: "gracefully shutting down" in gateway.log_text(), "the graceful stop")
        os.kill(master, signal.SIGTERM)
        gateway.wait_exit(master)
    finally:
        thread.join()
    assert "answer" not in result


def test_reload_moves_the_pid_file(gateway):
    gateway.write_config()
    master = gateway.start_foreground()
    moved = os.path.join(gateway.prefix, "moved.pid")
    gateway.write_config(main=f"pid {moved};")
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: os.path.exists(moved) and not os.path.exists(gateway.pid_file),
             "the pid file to move")
    assert open(moved).read() == f"{master}\n"
    assert gateway.command("-s", "stop").returncode == 0
    gateway.wait_exit(master)
    assert not os.path.exists(moved)


def test_a_second_start_is_refused_while_the_master_runs(gateway):
    gateway.write_config(workers=1, http=(
        f"server {{ listen 127.0.0.1:{gateway.port} reuseport; "
        f'location / {{ return 200 "hi"; }} }}'))
    master = gateway.start_daemon()
    second = gateway.command()
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"gateway: [emerg] a gateway master (pid {master}) is already running with "
        f'the pid file "{gateway.pid_file}"')
    assert gateway.read_pid() == master and listening_sockets(gateway.port) == 1


def test_a_stale_pid_file_does_not_block_a_start(gateway):
    with open(gateway.pid_file, "w") as file:
        file.write(f"{os.getpid()}\n")      # alive, but not a gateway master
    gateway.write_config(workers=1)
    master = gateway.start_daemon()
    assert gateway.read_pid() == master
