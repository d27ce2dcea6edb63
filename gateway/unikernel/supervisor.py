"""The supervisor thread of one pool: starts, watches, restarts and stops its QEMU processes."""

import ctypes
import os
import queue
import select
import shutil
import signal
import subprocess
import threading
import time

from gateway.unikernel.instance import READY, SPARE

# How often hangs are checked (exits wake the thread at once through pidfds).
POLL_INTERVAL = 0.1
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
# util-linux's setpriv, to start QEMU with its death signal set without a preexec_fn.
_SETPRIV = shutil.which("setpriv")


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
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # Called from the event loop ---------------------------------------------

    def add(self, inst):
        """Start a new instance."""
        self._commands.put(("add", inst))
        self._wake()

    def retire(self, inst):
        """Stop an instance for good (it has been drained)."""
        self._commands.put(("retire", inst))
        self._wake()

    def sync(self, timeout=1.0):
        """Wait until the thread has carried out the commands given so far (e.g. spawned the added
        instances). Waiting releases the GIL: a caller that went on computing instead would hold it,
        and the thread would get it only after a switch interval or more (5-15 ms measured)."""
        done = threading.Event()
        self._commands.put(("sync", done))
        self._wake()
        done.wait(timeout)

    def shutdown(self, timeout=2.0):
        """Kill every QEMU by pid and end the thread; bounded by timeout."""
        self._stopping = True
        if self.is_alive():
            self._wake()
            self.join(timeout)
        # Whatever the thread did not get to (it should have), killed here by pid.
        _kill_all([inst.proc for inst in self.instances])
        if not self.is_alive() and self._wake_r >= 0:
            # Closed here, not by the thread, so that no _wake() can write into a reused descriptor.
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _wake(self):
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass        # the pipe is full (the thread will look anyway) or already closed

    # The thread -------------------------------------------------------------

    def run(self):
        try:
            while not self._stopping:
                try:
                    self._round()
                except Exception as exc:    # a bug must not end supervision: say it, go on
                    self._log("alert", f'supervising pool: {type(exc).__name__}: {exc}')
                    time.sleep(POLL_INTERVAL)
        finally:
            # Every SIGKILL first, then the waits: stopping N instances costs one exit, not N.
            _kill_all([inst.proc for inst in self.instances])
            for inst in self.instances:
                self._reap(inst)

    def _round(self):
        self._wait()
        while True:
            try:
                command, inst = self._commands.get_nowait()
            except queue.Empty:
                break
            if command == "add":
                self.instances.append(inst)
                self._spawn(inst)
            elif command == "retire":
                self._reap(inst, kill=True)
                self.instances.remove(inst)
                self._notify(self.events.retired, inst)
            elif command == "sync":
                inst.set()      # an Event, not an instance
        if self._stopping:
            return
        now = time.monotonic()
        for inst in self.instances:
            try:
                self._check(inst, now)
            except Exception as exc:    # a bug must not end supervision of the others
                self._log("alert", f'supervising unikernel "{inst.name}": {type(exc).__name__}: {exc}')

    def _wait(self):
        # A pidfd becomes readable the moment its process exits: restarts need no polling; the
        # timeout only paces the hang checks and pending restarts.
        # poll, not select: a worker with many client connections opens pidfds numbered 1024 and up.
        now = time.monotonic()
        timeout = POLL_INTERVAL
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for inst in self.instances:
            if inst.pidfd is not None:
                poller.register(inst.pidfd, select.POLLIN)
            if inst.restart_at is not None:
                timeout = min(timeout, max(0.0, inst.restart_at - now))
        poller.poll(timeout * 1000)
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _check(self, inst, now):
        proc = inst.proc
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self._reap(inst)
                self._exited(inst, describe_exit(code) + _last_words(inst.stderr_log, code), now)
                return
            limit = self.tunables.hang_timeout if inst.state in (READY, SPARE) else self.tunables.boot_timeout
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
        # The first exit in the window restarts at once; more back off exponentially.
        delay = 0.0 if len(exits) == 1 else \
            min(self.tunables.backoff_max, self.tunables.backoff_min * 2 ** (len(exits) - 2))
        inst.restart_at = now + delay
        self._notify(self.events.exited, inst, inst.generation, True)
        self._log("error", f'unikernel "{inst.name}" (pid {inst.pid}) {reason}; restarting in {delay:.2f}s')

    def _spawn(self, inst):
        inst.link.discard_stale()
        inst.generation += 1
        inst.last_pong = time.monotonic()
        try:
            with open(inst.stderr_log, "ab") as err:
                if _SETPRIV:
                    # No preexec_fn: subprocess can vfork instead of copying a big worker's page tables
                    # (about 3 ms less per QEMU started); setpriv sets the same death signal, then execs.
                    inst.proc = subprocess.Popen([_SETPRIV, "--pdeathsig", "KILL", *inst.argv],
                                                 pass_fds=inst.link.pass_fds, stdin=subprocess.DEVNULL,
                                                 stdout=err, stderr=err)
                else:
                    inst.proc = subprocess.Popen(inst.argv, pass_fds=inst.link.pass_fds, stdin=subprocess.DEVNULL,
                                                 stdout=err, stderr=err, preexec_fn=_die_with_parent)
        except OSError as exc:
            inst.proc = None
            self._exited(inst, f"could not be started ({exc.strerror})", time.monotonic())
            return
        inst.pid = inst.proc.pid
        try:
            inst.pidfd = os.pidfd_open(inst.pid)
        except OSError:
            inst.pidfd = None       # an old kernel: exits are seen by polling
        self._notify(self.events.spawned, inst, inst.generation)

    def _reap(self, inst, kill=False):
        if kill:
            _kill(inst.proc)
        if inst.pidfd is not None:
            os.close(inst.pidfd)
            inst.pidfd = None

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


def _kill_all(procs):
    live = [p for p in procs if p is not None and p.poll() is None]
    for proc in live:
        try:
            proc.kill()
        except OSError:
            pass
    for proc in live:
        _kill(proc)


def _kill(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.kill()
        proc.wait(timeout=1.0)
    except (OSError, subprocess.TimeoutExpired):
        pass
