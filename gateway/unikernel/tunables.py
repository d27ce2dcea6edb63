"""Every host-side knob of a unikernel pool in one place: timeouts, health pings, scaling thresholds.

A pool's ``setting NAME VALUE`` lines whose NAME is a field below tune the gateway's side of that pool;
every other setting is handed to the guest on its command line as ``NAME=VALUE`` (e.g. ``key`` for auth).
"""

from dataclasses import dataclass, fields

from gateway.config.values import parse_time
from gateway.errors import LaunchFailed


@dataclass
class Tunables:
    """Host-side behaviour of one pool; times in seconds."""

    # Dispatch.
    request_timeout: float = 10.0      # a request without a reply by then gets 504
    max_inflight: int = 32             # requests in flight per instance (frames are capped separately)
    max_inflight_frames: int = 192     # below the guest's 256-slot receive ring (PROTOCOL.md)
    queue_limit: int = 1024            # requests waiting for an instance; beyond it 503
    retries: int = 2                   # extra tries on another instance for idempotent operations
    # Health (the supervisor thread judges, the event loop pings).
    ping_interval: float = 0.5         # health ping to every ready instance
    hang_timeout: float = 3.0          # no ping answered for this long: killed and restarted
    boot_timeout: float = 10.0         # not answering a ping this long after start: killed and restarted
    backoff_min: float = 0.05          # the first exit restarts at once; the next waits this, doubled after
    backoff_max: float = 5.0
    crash_window: float = 30.0         # restarts counted over this window ...
    crash_limit: int = 5               # ... more than this many in it: the instance is marked failed
    # Autoscaling (autoscaler.py): sampled every scale_interval.
    scale_interval: float = 1.0
    scale_up_load: float = 8.0         # (in flight + queued) per ready instance above this ...
    scale_up_latency: float = 0.050    # ... or mean reply latency above this (seconds) ...
    scale_up_ticks: int = 2            # ... for this many consecutive samples adds one instance
    scale_down_idle: float = 30.0      # an instance pool with nothing in flight this long retires one

    @classmethod
    def split(cls, settings):
        """(Tunables, guest settings) from a pool's settings dict; LaunchFailed on a bad value."""
        tunables = cls()
        guest = {}
        kinds = {f.name: f.type for f in fields(cls)}
        for name, text in settings.items():
            kind = kinds.get(name)
            if kind is None:
                guest[name] = text
                continue
            value = _parse(kind, text)
            if value is None or value < 0:
                raise LaunchFailed(f'invalid value "{text}" in unikernel setting "{name}"')
            setattr(tunables, name, value)
        return tunables, guest


def _parse(kind, text):
    if kind in (int, "int"):
        return int(text) if text.isdigit() else None
    if text.replace(".", "", 1).isdigit() and "." in text:
        return float(text)
    return parse_time(text, long_units=False)
