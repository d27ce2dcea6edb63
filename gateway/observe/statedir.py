"""The private directory where worker processes publish what `metrics` and `status_json` show.

The master makes it (mode 0700, owned by the worker user) before it forks, when some location
has `metrics` or `status_json`, and removes it when it exits; workers find it in the environment
as PROMETHEUS_MULTIPROC_DIR, the name prometheus_client's multiprocess mode reads. In it: the
prometheus_client value files of every worker (counters outlive their worker, so totals keep
counting across respawns and reloads) and one status_PID.json per live worker.
"""

from __future__ import annotations

import os

from gateway.observe.errorlog import log

ENV = "PROMETHEUS_MULTIPROC_DIR"
STATUS_PREFIX = "status_"

_made: str | None = None        # the directory this process made (and removes)


def wanted(config) -> bool:
    """Whether any server or location of the config has `metrics` or `status_json`."""
    http = config.http
    pending = list(http.servers) if http is not None else []
    while pending:
        item = pending.pop()
        if item.settings.metrics or item.settings.status_json:
            return True
        pending.extend(getattr(item, "locations", None) or getattr(item, "children", []))
    return False


def create(config, account=None) -> None:
    """Make the directory if the config wants it and it is not made yet (master or single process)."""
    global _made
    if _made is not None or not wanted(config):
        return
    import tempfile     # only configs with metrics or status_json need it
    _made = tempfile.mkdtemp(prefix="gateway-observe-")
    if account is not None:
        os.chown(_made, account.uid, account.gid)
    os.environ[ENV] = _made
    log.info(f'metrics and status_json publish into "{_made}"')


def path() -> str | None:
    """The directory workers publish into, None when there is none."""
    return os.environ.get(ENV)


def status_file(pid: int) -> str:
    return os.path.join(path(), f"{STATUS_PREFIX}{pid}.json")


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges and its status file go too; its counters stay (master)."""
    if _made is None:
        return
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid, _made)
    try:
        os.unlink(os.path.join(_made, f"{STATUS_PREFIX}{pid}.json"))
    except FileNotFoundError:
        pass


def remove() -> None:
    """Remove the directory (the master, on exit)."""
    global _made
    if _made is None:
        return
    import shutil
    shutil.rmtree(_made, ignore_errors=True)
    if os.environ.get(ENV) == _made:
        del os.environ[ENV]
    _made = None
