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
from gateway.unikernel.prestart import FAILED, LOADING, PAUSED, RESTARTING, monitor_pair

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
        self.pool_name = pool_name
        self.loop = loop
        self.tunables = tunables
        # The pool: spawned(inst, gen, paused), exited(inst, gen), retired(inst), paused_changed(p),
        # paused_failed(p), log(...), and qemu_argv(link, console, monitor_fd) (pure: called from this thread).
        self.events = events
        self.instances = []
        self.paused = []                # PausedQemu ready (or getting ready) for the next instance to start
        self._commands = queue.SimpleQueue()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # Called from the event loop ---------------------------------------------

    def add(self, inst):
        """Start a new instance."""
        self._commands.put(("add", inst))
        self._wake()

    def prestart(self, paused):
        """Start a paused QEMU (prestart.py) and keep it for the next instance that starts."""
        self._commands.put(("prestart", paused))
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
        _kill_all([inst.proc for inst in self.instances] + [p.proc for p in self.paused])
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
            _kill_all([inst.proc for inst in self.instances] + [p.proc for p in self.paused])
            for inst in self.instances:
                self._reap(inst)
            for paused in self.paused:
                self._reap(paused)

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
            elif command == "prestart":
                self.paused.append(inst)
                self._spawn_paused(inst)
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
        for paused in list(self.paused):
            try:
                self._check_paused(paused, now)
            except Exception as exc:
                self._log("alert", f'supervising unikernel "{self.pool_name}", a paused QEMU: '
                          f"{type(exc).__name__}: {exc}")

    def _wait(self):
        # A pidfd becomes readable the moment its process exits: restarts need no polling; the
        # timeout only paces the hang checks and pending restarts.
        # poll, not select: a worker with many client connections opens pidfds numbered 1024 and up.
        now = time.monotonic()
        timeout = POLL_INTERVAL
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for inst in self.instances + self.paused:
            if inst.pidfd is not None:
                poller.register(inst.pidfd, select.POLLIN)
            if inst.qmp is not None:
                poller.register(inst.qmp.fileno(), select.POLLIN)
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
                self._exited(inst, describe_exit(code) + _last_words(inst.stderr_now, code), now)
                return
            if inst.qmp is not None:
                self._read_monitor(inst, f'unikernel "{inst.name}" (pid {inst.pid})')
                if inst.qmp is not None and not inst.qmp.pending:
                    inst.qmp.close()        # the resume is answered: the monitor has done its part
                    inst.qmp = None
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
        if self._resume(inst):
            return
        link = inst.qemu_link
        link.discard_stale()
        inst.generation += 1
        inst.last_pong = time.monotonic()
        inst.stderr_now = inst.stderr_log
        try:
            inst.proc = _popen(inst.argv, link.pass_fds, inst.stderr_log)
        except OSError as exc:
            inst.proc = None
            self._exited(inst, f"could not be started ({exc.strerror})", time.monotonic())
            return
        inst.pid = inst.proc.pid
        inst.pidfd = _pidfd(inst.pid)
        self._notify(self.events.spawned, inst, inst.generation, None)

    # Paused QEMUs (prestart.py) -----------------------------------------------

    def _resume(self, inst):
        """Run inst on a paused QEMU if one is up (its link becomes inst's): True if it did."""
        now = time.monotonic()
        while True:
            up = [p for p in self.paused if p.proc is not None]
            if not up:
                return False
            # One that has finished loading, else the oldest: still sooner than a QEMU not started yet.
            paused = next((p for p in up if p.state == PAUSED), up[0])
            code = paused.proc.poll()
            if code is None:
                try:
                    if paused.qmp is None:
                        raise OSError("closed")
                    paused.qmp.resume(inst.console_log)
                except OSError as exc:
                    _kill(paused.proc)
                    why = f"lost its monitor ({exc.strerror or exc})"
                else:
                    break
            else:
                why = describe_exit(code) + _last_words(paused.stderr_log, code)
            self._reap(paused)
            self._paused_exited(paused, why, now)
        self.paused.remove(paused)
        inst.generation += 1
        inst.last_pong = now
        inst.proc, inst.pid, inst.pidfd, inst.qmp = paused.proc, paused.pid, paused.pidfd, paused.qmp
        inst.qemu_link = paused.link
        inst.stderr_now = paused.stderr_log
        # Its own restarts start QEMU on the link it took, logging to its own console.
        inst.argv = self.events.qemu_argv(paused.link, inst.console_log)
        paused.proc = paused.pidfd = paused.qmp = None
        self._notify(self.events.spawned, inst, inst.generation, paused)
        return True

    def _spawn_paused(self, paused):
        paused.link.discard_stale()
        now = time.monotonic()
        monitor, theirs = monitor_pair()
        try:
            argv = self.events.qemu_argv(paused.link, None, theirs.fileno())
            paused.proc = _popen(argv, (*paused.link.pass_fds, theirs.fileno()), paused.stderr_log)
        except OSError as exc:
            monitor.close()
            paused.proc = None
            self._paused_exited(paused, f"could not be started ({exc.strerror})", now)
            return
        finally:
            theirs.close()
        paused.qmp = monitor
        paused.pid = paused.proc.pid
        paused.pidfd = _pidfd(paused.pid)
        paused.state = LOADING
        paused.started_at = now
        self._notify(self.events.paused_changed, paused)

    def _check_paused(self, paused, now):
        if paused.proc is None:
            if paused.restart_at is not None and now >= paused.restart_at:
                paused.restart_at = None
                paused.restarts += 1
                self._spawn_paused(paused)
            return
        code = paused.proc.poll()
        if code is not None:
            self._reap(paused)
            self._paused_exited(paused, describe_exit(code) + _last_words(paused.stderr_log, code), now)
            return
        if paused.qmp is not None:
            self._read_monitor(paused, f'unikernel "{self.pool_name}", paused QEMU (pid {paused.pid})')
        if paused.qmp is None:
            paused.proc.kill()          # no monitor, no resume: noticed as an exit next round
            return
        if paused.qmp.greeted:
            paused.qmp.negotiate()
        if paused.state == LOADING:
            if paused.qmp.negotiated:
                paused.state = PAUSED
                self._notify(self.events.paused_changed, paused)
            elif now - paused.started_at > self.tunables.boot_timeout:
                paused.proc.kill()

    def _paused_exited(self, paused, how, now):
        paused.proc = None
        paused.last_exit = how
        exits = paused.recent_exits
        exits.append(now)
        while exits and exits[0] < now - self.tunables.crash_window:
            exits.popleft()
        if len(exits) > self.tunables.crash_limit:
            paused.state = FAILED
            self.paused.remove(paused)
            self._notify(self.events.paused_failed, paused)
            self._log("error", f'unikernel "{self.pool_name}": paused QEMU (pid {paused.pid}) {how}; it exited '
                      f"{len(exits)} times in {self.tunables.crash_window:g}s: no more paused QEMUs for this pool")
            return
        delay = 0.0 if len(exits) == 1 else \
            min(self.tunables.backoff_max, self.tunables.backoff_min * 2 ** (len(exits) - 2))
        paused.restart_at = now + delay
        paused.state = RESTARTING
        self._notify(self.events.paused_changed, paused)
        self._log("warn", f'unikernel "{self.pool_name}": paused QEMU (pid {paused.pid}) {how}; '
                  f"starting another in {delay:.2f}s")

    def _read_monitor(self, owner, what):
        try:
            refused = owner.qmp.read()
        except (EOFError, OSError):
            owner.qmp.close()
            owner.qmp = None
            return
        for command, why in refused:
            self._log("error", f"{what}: QEMU refused {command}: {why}")

    def _reap(self, inst, kill=False):
        # inst: an Instance or a PausedQemu.
        if kill:
            _kill(inst.proc)
        if inst.pidfd is not None:
            os.close(inst.pidfd)
            inst.pidfd = None
        if inst.qmp is not None:
            inst.qmp.close()
            inst.qmp = None

    def _notify(self, callback, *args):
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass        # the loop is closed: the gateway worker is going away

    def _log(self, level, message):
        self._notify(self.events.log, level, message)


def _popen(argv, pass_fds, stderr_log):
    with open(stderr_log, "ab") as err:
        if _SETPRIV:
            # No preexec_fn: subprocess can vfork instead of copying a big worker's page tables
            # (about 3 ms less per QEMU started); setpriv sets the same death signal, then execs.
            return subprocess.Popen([_SETPRIV, "--pdeathsig", "KILL", *argv], pass_fds=pass_fds,
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        return subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                preexec_fn=_die_with_parent)


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None         # an old kernel: exits are seen by polling


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
