"""The master process: forks workers and supervises them (respawn, reload, reopen, stop).

The master never runs an event loop.  Its signals stay blocked and are taken one at a
time with ``sigtimedwait``, so every handler runs in the main loop with nothing
interrupted halfway (nginx's master does the same with ``sigsuspend``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from gateway import __version__
from gateway.config.model import Config
from gateway.errors import GatewayError
from gateway.observe import statedir, stub_status
from gateway.observe.errorlog import format_os_error, log
from gateway.process import pidfile, privileges, signals, worker
from gateway.process.daemon import ReadyPipe
from gateway.process.listeners import Listeners
from gateway.process.title import set_process_name

WAITED_SIGNALS = signals.MASTER_SIGNALS + (worker.READY_SIGNAL,)
KILL_AFTER = 5.0          # a fast stop SIGKILLs workers still alive after this many seconds
RESPAWN_INTERVAL = 1.0    # at most one respawn per slot per second, so a crash loop cannot spin
TICK = 0.5


@dataclass
class Slot:
    """One worker process and what it runs."""

    index: int
    generation: int
    config: Config
    started: float
    ready: bool = False
    retiring: bool = False
    counters: int = 0       # its row in the stub_status table


def worker_count(config: Config) -> int:
    """How many workers a config asks for (one without a master)."""
    return max(1, config.worker_processes) if config.master_process else 1


class Master:
    """Owns the listening sockets and the pid file; keeps the wanted workers running."""

    def __init__(self, config: Config, listeners: Listeners, pid_path: str,
                 reload_config: Callable[[], Config], apply_logs: Callable[[Config], None]):
        self.config = config
        self.listeners = listeners
        self.pid_path = pid_path
        self.reload_config = reload_config
        self.apply_logs = apply_logs
        self.account = privileges.resolve(config)
        self.slots: dict[int, Slot] = {}
        self.configs: dict[int, Config] = {}     # generation -> the config its workers run
        self.current = 0                  # generation serving
        self.pending: int | None = None   # generation a reload is starting
        self.stopping: str | None = None  # "graceful" or "fast"
        self.kill_at: float | None = None
        self.respawns: list[tuple[float, int, int]] = []   # (due, index, generation)
        self.status = 0
        self.failure: str | None = None
        self.ready: ReadyPipe | None = None
        stub_status.create()      # before any fork: every worker shares it
        statedir.create(config, self.account)

    # Main loop -----------------------------------------------------------

    def run(self, ready: ReadyPipe | None = None) -> int:
        """Write the pid file, start the workers and supervise them; returns the exit status.

        ``ready`` (daemon mode) is told once: when the first workers serve, or why they cannot.
        """
        self.ready = ready
        signals.block_master_signals()
        signal.pthread_sigmask(signal.SIG_BLOCK, [worker.READY_SIGNAL])
        pidfile.write(self.pid_path, os.getpid())
        set_process_name(pidfile.MASTER_NAME)
        log.notice(f"gateway/{__version__}")
        log.notice("start worker processes")
        try:
            self.current = 1
            self._spawn_generation(self.current, self.config)
            while self.stopping is None or self.slots:
                info = signal.sigtimedwait(WAITED_SIGNALS, TICK)
                if info is not None:
                    self._dispatch(info)
                self._tick()
        except GatewayError as exc:
            self.failure = str(exc)
            raise
        finally:
            self.listeners.close()
            pidfile.remove(self.pid_path, os.getpid())
            statedir.remove()
            log.notice("exit")
            if self.ready is not None:
                # Only now, so that a caller who retries finds the port and pid file free.
                self.ready.report(self.failure or "the master exited during startup")
        return self.status

    def _dispatch(self, info) -> None:
        signo = info.si_signo
        if signo == signal.SIGCHLD:
            self._reap()
            return
        if signo == worker.READY_SIGNAL:
            self._worker_ready(info.si_pid)
            return
        what = {signal.SIGHUP: "reconfiguring", signal.SIGUSR1: "reopening logs",
                signal.SIGQUIT: "shutting down", signal.SIGTERM: "exiting",
                signal.SIGINT: "exiting"}[signo]
        log.notice(f"signal {signals.describe(signo)} received from {info.si_pid}, {what}")
        if signo == signal.SIGHUP:
            self._reload()
        elif signo == signal.SIGUSR1:
            self._reopen()
        elif signo == signal.SIGQUIT:
            self._stop(graceful=True)
        else:
            self._stop(graceful=False)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.kill_at is not None and now >= self.kill_at:
            for pid in self.slots:
                log.alert(f"worker process {pid} did not exit in time, sending SIGKILL")
                _kill(pid, signal.SIGKILL)
            self.kill_at = None
        due = [r for r in self.respawns if r[0] <= now]
        self.respawns = [r for r in self.respawns if r[0] > now]
        for _, index, generation in due:
            if self.stopping is None and generation in (self.current, self.pending):
                self._spawn(index, generation, self.configs[generation])

    # Workers ---------------------------------------------------------------

    def _spawn_generation(self, generation: int, config: Config) -> None:
        self.configs = {gen: cfg for gen, cfg in self.configs.items()
                        if gen in (self.current, self.pending)}
        self.configs[generation] = config
        for index in range(worker_count(config)):
            self._spawn(index, generation, config)

    def _spawn(self, index: int, generation: int, config: Config) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        counters = stub_status.claim({s.counters for s in self.slots.values()})
        try:
            pid = os.fork()
        except OSError as exc:
            log.alert(format_os_error("fork", None, exc) + ", retrying")
            self.respawns.append((time.monotonic() + RESPAWN_INTERVAL, index, generation))
            return
        if pid == 0:
            status = worker.EXIT_FATAL
            try:
                stub_status.use(counters)
                status = self._worker_main(index, config)
            except BaseException:   # nothing may unwind into the master's code in a child
                log.alert("worker process failed: " + traceback.format_exc().rstrip())
            finally:
                os._exit(status)
        self.slots[pid] = Slot(index, generation, config, time.monotonic(), counters=counters)
        log.notice(f"start worker process {pid}")

    def _worker_main(self, index: int, config: Config) -> int:
        signals.reset_in_child()
        if self.ready is not None:
            self.ready.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [worker.READY_SIGNAL])
        set_process_name("gateway: worker")
        mine = self.listeners.for_worker(index)
        keep = {id(sock) for socks in mine.values() for sock in socks}
        for sock in self.listeners.all():
            if id(sock) not in keep:
                sock.close()     # another worker's reuseport socket: accepting is its job
        try:
            account = privileges.resolve(config)
        except GatewayError as exc:
            log.emerg(str(exc))
            return worker.EXIT_FATAL
        return worker.run(config, mine, os.getppid(), account)

    def _worker_ready(self, pid: int) -> None:
        slot = self.slots.get(pid)
        if slot is None:
            return
        slot.ready = True
        if self.pending is not None and self._all_ready(self.pending):
            self._promote()
        if self.ready is not None and self.pending is None and self._all_ready(self.current):
            self.ready.report(None)
            self.ready = None

    def _all_ready(self, generation: int) -> bool:
        slots = [s for s in self.slots.values() if s.generation == generation]
        return bool(slots) and all(s.ready for s in slots)

    def _reap(self) -> None:
        # Only our workers: other children of the master (QEMU processes started by
        # the unikernel supervisor) are waited for by whoever started them.
        for pid in list(self.slots):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == pid:
                slot = self.slots.pop(pid)
                stub_status.retire(slot.counters)
                statedir.worker_exited(pid)
                if slot.config.http is not None and slot.config.http.unikernels:
                    # A worker killed by a signal cannot remove its copies of the images.
                    from gateway.unikernel import image_copies   # only configs with pools need it
                    image_copies.remove_of(pid)
                self._worker_exited(pid, slot, status)

    def _worker_exited(self, pid: int, slot: Slot, status: int) -> None:
        expected = self.stopping is not None or slot.retiring
        if os.WIFSIGNALED(status):
            log.log("notice" if expected else "alert",
                    f"worker process {pid} exited on signal {os.WTERMSIG(status)}")
        else:
            code = os.WEXITSTATUS(status)
            log.log("notice" if expected and code == 0 else "alert",
                    f"worker process {pid} exited with code {code}")
        if expected:
            return
        fatal = os.WIFEXITED(status) and os.WEXITSTATUS(status) == worker.EXIT_FATAL
        if slot.generation == self.pending and not slot.ready:
            self._abort_reload()
            return
        if fatal:
            log.alert(f"worker process {pid} exited with fatal code {worker.EXIT_FATAL} "
                      "and cannot be respawned")
            if not any(s.generation == self.current for s in self.slots.values()):
                self._give_up()
            return
        due = max(time.monotonic(), slot.started + RESPAWN_INTERVAL)
        self.respawns.append((due, slot.index, slot.generation))

    def _give_up(self) -> None:
        message = "no worker process is left, exiting"
        if log.paths:
            message += f" (see {log.paths[0]})"
        log.alert(message)
        self.status = 1
        self.failure = message
        self._stop(graceful=False)

    def _signal_workers(self, signo: int, generation: int | None = None) -> None:
        for pid, slot in self.slots.items():
            if generation is None or slot.generation == generation:
                _kill(pid, signo)

    # Signals -----------------------------------------------------------------

    def _reload(self) -> None:
        if self.stopping is not None:
            return
        try:
            config = self.reload_config()
            account = privileges.resolve(config)
            self.apply_logs(config)
            self.listeners.update(config, worker_count(config))
        except GatewayError as exc:
            log.emerg(str(exc))
            log.alert("the new configuration is not applied, the running one stays")
            return
        for message in config.warnings:
            log.warn(message)
        self.account = account
        statedir.create(config, account)
        self._move_pid_file(config)
        if self.pending is not None:
            self._retire(self.pending)     # a reload during a reload: the newest wins
        self.config = config
        self.pending = max(self.current, self.pending or 0) + 1
        self.respawns = [r for r in self.respawns if r[2] == self.current]
        log.notice("start worker processes")
        self._spawn_generation(self.pending, config)

    def _promote(self) -> None:
        # Only now that every new worker accepts do the old ones stop accepting:
        # both share the listening sockets meanwhile, so no connection is refused.
        old, self.current, self.pending = self.current, self.pending, None
        self.respawns = [r for r in self.respawns if r[2] == self.current]
        self._retire(old)

    def _abort_reload(self) -> None:
        log.alert("new worker processes failed to start, the running ones stay")
        self._retire(self.pending, graceful=False)
        self.pending = None
        self.config = self.configs[self.current]
        try:
            self.listeners.update(self.config, worker_count(self.config))
        except GatewayError as exc:
            log.alert(str(exc))

    def _retire(self, generation: int, graceful: bool = True) -> None:
        for pid, slot in self.slots.items():
            if slot.generation == generation and not slot.retiring:
                slot.retiring = True
                _kill(pid, signal.SIGQUIT if graceful else signal.SIGTERM)

    def _move_pid_file(self, config: Config) -> None:
        new_path = config.pid or self.pid_path
        if new_path == self.pid_path:
            return
        try:
            pidfile.write(new_path, os.getpid())
        except GatewayError as exc:
            log.alert(str(exc))
            return
        pidfile.remove(self.pid_path, os.getpid())
        self.pid_path = new_path

    def _reopen(self) -> None:
        log.reopen()
        if self.account is not None:
            # As nginx's master does: create the new files and give them to the worker
            # user, who could not create them in a root-owned directory.
            log.chown(self.account.uid, self.account.gid)
            for path in access_log_paths(self.config):
                _create_for(path, self.account)
        self._signal_workers(signal.SIGUSR1)

    def _stop(self, graceful: bool) -> None:
        if self.stopping == "fast" or (self.stopping == "graceful" and graceful):
            return
        self.stopping = "graceful" if graceful else "fast"
        self.respawns.clear()
        self.listeners.close()   # once workers stop accepting, new connections are refused
        self._signal_workers(signal.SIGQUIT if graceful else signal.SIGTERM)
        if not graceful:
            self.kill_at = time.monotonic() + KILL_AFTER


def access_log_paths(config: Config) -> set[str]:
    """Every access log file the config writes."""
    paths = set()
    pending = list(config.http.servers) if config.http is not None else []
    while pending:
        item = pending.pop()
        paths.update(spec.path for spec in item.settings.access_logs if spec.syslog is None)
        limits = getattr(item, "limit_except", None)
        if limits is not None:
            paths.update(spec.path for spec in limits.location.settings.access_logs
                         if spec.syslog is None)
        pending.extend(getattr(item, "locations", None) or getattr(item, "children", []))
    return paths


def _create_for(path: str, account: privileges.Account) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        os.chown(path, account.uid, account.gid)
    except OSError as exc:
        log.alert(format_os_error("open", path, exc))


def _kill(pid: int, signo: int) -> None:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass      # already gone; its SIGCHLD is on the way


def run_single(config: Config, listeners: Listeners, pid_path: str,
               ready: ReadyPipe | None = None) -> int:
    """``master_process off``: serve in this very process, as nginx's single-process mode."""
    pidfile.write(pid_path, os.getpid())
    stub_status.create()
    stub_status.use(stub_status.claim(()))
    statedir.create(config)
    if ready is not None:
        ready.report(None)
    try:
        log.notice(f"gateway/{__version__}")
        return worker.run(config, listeners.for_worker(0), None)
    finally:
        listeners.close()
        pidfile.remove(pid_path, os.getpid())
        statedir.remove()
