"""A worker process: its own uvloop event loop running the HTTP application on inherited sockets."""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import resource
import signal
import socket
import traceback

from gateway.config.model import Config
from gateway.errors import GatewayError
from gateway.observe.errorlog import log
from gateway.process import privileges, signals

# Exit status that tells the master not to respawn (nginx uses 2 the same way).
EXIT_FATAL = 2

# A worker tells its master "I am serving" with this signal: realtime signals queue
# one per sender and carry the sender's pid, so no readiness report is lost.
READY_SIGNAL = signal.SIGRTMIN + 1

# Which class serves HTTP; overridable ("module:Class") to embed another application.
APP_ENV = "GATEWAY_WORKER_APP"
DEFAULT_APP = "gateway.http.server:WorkerApp"


def require_uvloop():
    """The uvloop module, or GatewayError saying how to get it."""
    try:
        import uvloop
    except ImportError as exc:
        raise GatewayError("uvloop is required but cannot be imported "
                           f"({exc}); install it with: pip install uvloop") from exc
    return uvloop


def app_class():
    """The application class workers run; raises GatewayError when it cannot be imported."""
    spec = os.environ.get(APP_ENV) or DEFAULT_APP
    module_name, _, class_name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise GatewayError(f'the worker application "{spec}" cannot be loaded: {exc}') from exc


# Net new container objects between two young collections (CPython's default: 700).
# A proxied request keeps about twenty alive while in flight, so with the default and a
# few hundred connections every collection finds them alive and promotes them, and the
# older generations fill with objects that die by reference counting anyway; measured
# at wrk -c1000, that was about 10% of the worker's CPU. 20,000 waits for a few MB.
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the request path.

    The config, plans and modules built with the app live as long as the worker: frozen,
    the collector never walks them again; see GC_YOUNG_THRESHOLD for the rest.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


class Worker:
    """Runs one application instance until a stop signal, then shuts it down."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, master_pid: int | None):
        self.config = config
        self.loop = loop
        self.master_pid = master_pid
        self.app = None
        self.ready = False
        self._stop: asyncio.Future | None = None

    async def serve(self, sockets: dict[tuple[str, int], list[socket.socket]],
                    account: privileges.Account | None = None) -> None:
        """Start the app on ``sockets``, report readiness, and return once it has closed."""
        self._stop = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGTERM, self.stop, False)
        self.loop.add_signal_handler(signal.SIGINT, self.stop, False)
        self.loop.add_signal_handler(signal.SIGQUIT, self.stop, True)
        self.loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        self.loop.add_signal_handler(signal.SIGHUP, self._hup)
        signals.unblock()
        self.app = app_class()(self.config, self.loop)
        if account is not None:
            # After the app opened its files (as nginx's master opens logs as root),
            # before it accepts a single connection.
            privileges.drop(account)
        # Before start(), which waits for the unikernel pools to boot: the collection runs meanwhile.
        tune_garbage_collector()
        await self.app.start(sockets)
        self.ready = True
        if self.master_pid is not None:
            self._report_ready()
            self._watch_master()
        graceful = await self._stop
        self.app.shutdown(graceful)
        limit = self.config.worker_shutdown_timeout
        if graceful and limit is not None:
            # As nginx: when the time is up, the connections still open are closed.
            self.loop.call_later(limit, self._shutdown_timed_out)
        await self.app.wait_closed()

    def _shutdown_timed_out(self) -> None:
        log.notice("worker_shutdown_timeout expired, closing the connections still open")
        self.app.shutdown(False)

    def stop(self, graceful: bool) -> None:
        """Begin a graceful or fast stop; a fast stop may follow a graceful one."""
        if not self._stop.done():
            log.notice("gracefully shutting down" if graceful else "exiting")
            self._stop.set_result(graceful)
        elif not graceful and self.app is not None:
            self.app.shutdown(False)

    def reopen_logs(self) -> None:
        """USR1: reopen the error log and the application's logs."""
        log.notice("reopening logs")
        log.reopen()
        if self.app is not None:
            self.app.reopen_logs()

    def _hup(self) -> None:
        # Reloading is the master's job; a worker ignores HUP, as nginx's workers do.
        if self.master_pid is None:
            log.warn("reload is not supported with \"master_process off\", restart instead")

    def _report_ready(self) -> None:
        try:
            os.kill(self.master_pid, READY_SIGNAL)
        except OSError:
            pass

    def _watch_master(self) -> None:
        # A worker whose master died (kill -9) would otherwise serve forever with
        # nobody to stop it: finish gracefully instead.
        if os.getppid() != self.master_pid:
            log.alert("master process is gone, shutting down")
            self.stop(True)
            return
        self.loop.call_later(1.0, self._watch_master)


def set_open_files_limit(limit: int | None) -> None:
    """worker_rlimit_nofile: raise (or lower) this process's open-files limit, as root may."""
    if limit is None:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError) as exc:
        # nginx logs this at alert and goes on with the limit it has.
        errno = getattr(exc, "errno", None) or 1
        reason = getattr(exc, "strerror", None) or "Operation not permitted"
        log.alert(f"setrlimit(RLIMIT_NOFILE, {limit}) failed ({errno}: {reason})")


def run(config: Config, sockets: dict, master_pid: int | None,
        account: privileges.Account | None = None) -> int:
    """The body of a worker process (or the single process): returns its exit status."""
    set_open_files_limit(config.worker_rlimit_nofile)
    uvloop = require_uvloop()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(config, loop, master_pid)
    try:
        loop.run_until_complete(worker.serve(sockets, account))
    except GatewayError as exc:
        log.emerg(str(exc))
        return EXIT_FATAL
    except Exception:   # a bug must be logged, not printed to a detached terminal
        log.alert("worker process failed: " + traceback.format_exc().rstrip())
        return 1 if worker.ready else EXIT_FATAL
    finally:
        loop.close()
    return 0
