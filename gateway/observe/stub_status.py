"""nginx's stub_status, counted across worker processes.

The master maps one anonymous shared page table before it forks anything; each worker process
writes its own slot (a row of counters) and nothing else, so there is no locking. A worker publishes
its row from the app's sweep (every 0.25 s) and when it stops, only when some location has
`stub_status`: other configurations pay nothing. Per-request work is none: requests are counted as
each connection's `requests_served`, added to the worker's total when the connection closes.
When a worker exits, the master folds its totals into the row of retired workers, so `accepts`,
`handled` and `requests` keep counting across reloads and respawns, as nginx's do.
"""

from __future__ import annotations

import mmap
import struct

# Per slot: accepts, handled, requests (totals), active, reading, writing, waiting (now).
_ROW = struct.Struct("<7q")
SLOTS = 256
RETIRED = 0          # the totals of workers that have exited
_TOTALS = 3

_table: mmap.mmap | None = None
_slot = 0


def create() -> None:
    """Map the shared table (the master, before it forks; or the only process)."""
    global _table
    if _table is None:
        _table = mmap.mmap(-1, _ROW.size * SLOTS)


def claim(taken) -> int:
    """A free slot for a worker about to be forked (the master); 0 when the table is full."""
    for slot in range(1, SLOTS):
        if slot not in taken:
            _write(slot, (0,) * 7)
            return slot
    return 0


def use(slot: int) -> None:
    """This process publishes into `slot` (called in the child right after fork)."""
    global _slot
    _slot = slot


def retire(slot: int) -> None:
    """A worker exited: its totals join the retired row, its slot is free again (the master)."""
    if _table is None or slot <= 0:
        return
    row = _read(slot)
    retired = _read(RETIRED)
    _write(RETIRED, tuple(retired[i] + row[i] for i in range(_TOTALS)) + (0,) * 4)
    _write(slot, (0,) * 7)


def publish(app) -> tuple:
    """This worker's row, computed from its connections, written to its slot; the row."""
    reading = writing = 0
    requests = app.requests_closed
    for conn in app.connections:
        requests += conn.requests_served
        if conn.request is not None:
            writing += 1
        elif conn.buffer:
            reading += 1
            requests += 1       # nginx counts a request once its first bytes are in
    active = len(app.connections)
    accepts = app.accepted
    row = (accepts, accepts - app.refused, requests, active, reading, writing, active - reading - writing)
    if _table is not None and _slot > 0:
        _write(_slot, row)
    return row


def render(app) -> bytes:
    """nginx's stub_status text: every worker's last published row, this one's as of now."""
    own = publish(app)
    total = [0] * 7
    rows = [own] if _table is None else [_read(RETIRED)] + [
        own if slot == _slot else _read(slot) for slot in range(1, SLOTS)]
    if _table is not None and _slot == 0:
        rows.append(own)        # a process without a slot (the table was full)
    for row in rows:
        for i, value in enumerate(row):
            total[i] += value
    accepts, handled, requests, active, reading, writing, waiting = total
    return (b"Active connections: %d \nserver accepts handled requests\n %d %d %d \n"
            b"Reading: %d Writing: %d Waiting: %d \n"
            % (active, accepts, handled, requests, reading, writing, waiting))


def _read(slot: int) -> tuple:
    return _ROW.unpack_from(_table, slot * _ROW.size)


def _write(slot: int, row) -> None:
    _ROW.pack_into(_table, slot * _ROW.size, *row)
