"""The supervisor thread of one pool: starts, watches, restarts and stops its QEMU processes."""

import ctypes
import os
import queue
import signal
import subprocess
import threading
import time

from gateway.unikernel.instance import READY

# How often exits and hangs are checked when no command arrives.
POLL_INTERVAL = 0.02
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PDEATHSIG follows the thread that forked: the supervisor thread lives as long as the pool, and a
    # crashed gateway worker takes this thread with it, so QEMU never outlives the worker.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def describe_exit(code):
    """'exited with status 1' or 'killed by signal SIGKILL'."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor(threading.Thread):
    """Owns every QEMU process of a pool; tells the event loop about changes with call_soon_threadsafe."""

    def __init__(self, pool_name, loop, tunables, events):
        super().__init__(name=f"unikernel-{pool_name}", daemon=True)
        self.loop = loop
        self.tunables = tunables
        self.events = events            # the pool: spawned(inst, gen), exited(inst, gen), retired(inst), log(...)
        self.instances = []
        self._commands = queue.SimpleQueue()
        self._stopping = False

    # Called from the event loop ---------------------------------------------

    def add(self, inst):
        """Start a new instance."""
        self._commands.put(("add", inst))

    def retire(self, inst):
        """Stop an instance for good (it has been drained)."""
        self._commands.put(("retire", inst))

    def shutdown(self, timeout=2.0):
        """Kill every QEMU by pid and end the thread; bounded by timeout."""
        self._stopping = True
        self._commands.put(("stop", None))
        if self.is_alive():
            self.join(timeout)
        # Whatever the thread did not get to (it should have), killed here by pid.
        for inst in self.instances:
            _kill(inst.proc)

    # The thread -------------------------------------------------------------

    def run(self):
        while True:
            try:
                command, inst = self._commands.get(timeout=POLL_INTERVAL)
            except queue.Empty:
                command = None
            if command == "stop" or self._stopping:
                break
            if command == "add":
                self.instances.append(inst)
                self._spawn(inst)
            elif command == "retire":
                inst.retiring = True
                _kill(inst.proc)
                self.instances.remove(inst)
                self._notify(self.events.retired, inst)
            now = time.monotonic()
            for inst in self.instances:
                self._check(inst, now)
        for inst in self.instances:
            _kill(inst.proc)

    def _check(self, inst, now):
        proc = inst.proc
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self._exited(inst, describe_exit(code) + _last_words(inst.stderr_log, code), now)
                return
            limit = self.tunables.boot_timeout if inst.state != READY else self.tunables.hang_timeout
            if now - inst.last_pong > limit:
                inst.kill_reason = f"no answer to health pings for {now - inst.last_pong:.1f}s"
                proc.kill()     # noticed as an exit on the next check
        elif inst.restart_at is not None and now >= inst.restart_at:
            inst.restart_at = None
            inst.restarts += 1
            self._spawn(inst)

    def _exited(self, inst, how, now):
        reason = f"{inst.kill_reason}, {how}" if inst.kill_reason else how
        inst.kill_reason = ""
        inst.proc = None
        inst.last_exit = reason
        exits = inst.recent_exits
        exits.append(now)
        window = self.tunables.crash_window
        while exits and exits[0] < now - window:
            exits.popleft()
        if len(exits) > self.tunables.crash_limit:
            self._notify(self.events.exited, inst, inst.generation, False)
            self._log("error", f'unikernel "{inst.name}" (pid {inst.pid}) {reason}; it exited '
                      f"{len(exits)} times in {window:g}s: marked failed, not restarted")
            return
        delay = min(self.tunables.backoff_max, self.tunables.backoff_min * 2 ** (len(exits) - 1))
        inst.restart_at = now + delay
        self._notify(self.events.exited, inst, inst.generation, True)
        self._log("error", f'unikernel "{inst.name}" (pid {inst.pid}) {reason}; restarting in {delay:.2f}s')

    def _spawn(self, inst):
        inst.link.discard_stale()
        inst.generation += 1
        inst.last_pong = time.monotonic()
        try:
            with open(inst.stderr_log, "ab") as err:
                inst.proc = subprocess.Popen(inst.argv, pass_fds=inst.link.pass_fds, stdin=subprocess.DEVNULL,
                                             stdout=err, stderr=err, preexec_fn=_die_with_parent)
        except OSError as exc:
            inst.proc = None
            self._exited(inst, f"could not be started ({exc.strerror})", time.monotonic())
            return
        inst.pid = inst.proc.pid
        self._notify(self.events.spawned, inst, inst.generation)

    def _notify(self, callback, *args):
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass        # the loop is closed: the gateway worker is going away

    def _log(self, level, message):
        self._notify(self.events.log, level, message)


def _last_words(path, code):
    # QEMU says why it gave up (bad image, bad option) on stderr; a killed QEMU says nothing new.
    if code < 0:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 512))
            lines = fh.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" ({lines[-1].strip()})" if lines else ""


def _kill(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.kill()
        proc.wait(timeout=1.0)
    except (OSError, subprocess.TimeoutExpired):
        pass
