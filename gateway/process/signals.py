"""Signal names of ``gateway -s`` and what the master and workers do with each signal."""

from __future__ import annotations

import os
import signal

from gateway.errors import GatewayError

# ``-s NAME`` -> the signal sent to the master, as nginx maps them.
COMMANDS = {
    "stop": signal.SIGTERM,       # fast shutdown
    "quit": signal.SIGQUIT,       # graceful shutdown
    "reload": signal.SIGHUP,      # reload the configuration
    "reopen": signal.SIGUSR1,     # reopen log files
}

# Signals the master waits for synchronously (blocked, then taken with sigtimedwait).
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                  signal.SIGUSR1, signal.SIGCHLD)


def send(pid: int, command: str) -> None:
    """Send ``command``'s signal to ``pid``; raises GatewayError in nginx's wording."""
    signo = COMMANDS[command]
    try:
        os.kill(pid, signo)
    except OSError as exc:
        raise GatewayError(
            f"kill({pid}, {int(signo)}) failed ({exc.errno}: {exc.strerror})") from exc


def block_master_signals() -> None:
    """Block the master's signals so they queue until sigtimedwait takes them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)


def reset_in_child() -> None:
    """Default handlers in a forked worker; the signals stay blocked until ``unblock()``.

    A QUIT arriving before the worker's event loop handles it must wait, not kill the
    worker with the default action.
    """
    for signo in MASTER_SIGNALS:
        signal.signal(signo, signal.SIG_DFL)


def unblock() -> None:
    """Let the master's signals through (the worker's loop now handles them)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)


def describe(signo: int) -> str:
    """``1 (SIGHUP)``, as nginx names a received signal."""
    try:
        return f"{signo} ({signal.Signals(signo).name})"
    except ValueError:
        return str(signo)
