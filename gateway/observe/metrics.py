"""Prometheus metrics counted over every worker process: `metrics;` in a location serves them.

Per request nothing touches prometheus_client: each location has a LocationMeter (C integers:
_fastpath/meter.pyx, twin of gateway/observe/meter_py.py) counting requests by status class and
response-time bucket in the log phase: the plan's `meter`, called where the access logs are
written, and None (one pointer test) in a config without `metrics` or `status_json`. Once a
second, before answering a scrape and when the worker stops, the worker adds what its meters
took into prometheus_client's multiprocess store (gateway/observe/statedir.py): an increment
there takes a lock and writes an mmap, several microseconds, too much for every request.
The answering worker renders every worker's files with prometheus_client's MultiProcessCollector.
"""

from __future__ import annotations

import time

from gateway._select import load_fast
from gateway.observe import meter_py, stub_status, statedir
from gateway.unikernel.instance import (
    DRAINING, FAILED, READY, RESTARTING, RETIRED, SPARE, STARTING, STOPPED)

INSTANCE_STATES = (STARTING, READY, SPARE, DRAINING, RESTARTING, FAILED, RETIRED, STOPPED)

# Response-time buckets (seconds): prometheus_client's defaults.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BOOT_BOUNDS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CLASSES = meter_py.CLASSES
# A location's counts in C arrays (_fastpath/meter.pyx), or its pure-Python twin.
LocationMeter = (load_fast("meter") or meter_py).LocationMeter
PEER_STATES = ("up", "down", "unhealthy", "failed")


class Meter:
    """One worker's counts and their publication into prometheus_client's multiprocess files."""

    def __init__(self):
        self.locations: dict[tuple[str, str], LocationMeter] = {}
        self._metrics = None
        self._last = {}             # (what, key) -> the cumulative value published last

    def location(self, server, location) -> LocationMeter:
        """The meter of a server's location (None: requests that match no location)."""
        key = (server_label(server), location_label(location))
        meter = self.locations.get(key)
        if meter is None:
            meter = self.locations[key] = LocationMeter(*key, BOUNDS)
        return meter

    def publish(self, app) -> None:
        """Add what this worker counted since the last time to the shared store."""
        m = self._metrics
        if m is None:
            m = self._metrics = _Metrics()
        for meter in self.locations.values():
            cells, seconds = meter.take()
            if not any(cells):
                continue
            for i in range(1, CLASSES):
                if cells[i]:
                    m.requests.labels(meter.server, meter.location, f"{i}xx").inc(cells[i])
            hist = m.duration.labels(meter.server, meter.location)
            # A whole second's observations at once: prometheus_client's Histogram has no bulk
            # observe, so its per-bucket values (non-cumulative in multiprocess files) are added to.
            for j, value in enumerate(hist._buckets):
                if cells[CLASSES + j]:
                    value.inc(cells[CLASSES + j])
            hist._sum.inc(seconds)
        accepts, handled, _, active, reading, writing, waiting = stub_status.publish(app)
        for state, value in (("active", active), ("reading", reading), ("writing", writing),
                             ("waiting", waiting)):
            m.connections.labels(state).set(value)
        self._add(m.accepted, "accepted", (), accepts)
        self._add(m.handled, "handled", (), handled)
        now = time.monotonic()
        for name, upstream in app.upstreams.items():
            for peer in upstream.balancer.all_peers:
                label = f"{peer.host}:{peer.port}"
                state = peer_state(peer, now)
                for each in PEER_STATES:
                    m.peer_state.labels(name, label, each).set(1 if each == state else 0)
                m.peer_connections.labels(name, label).set(peer.conns)
        pools = getattr(app.unikernels, "pools", None) or {}
        for name, pool in pools.items():
            counts = dict.fromkeys(INSTANCE_STATES, 0)
            for inst in pool.instances:
                counts[inst.state] = counts.get(inst.state, 0) + 1
                self._add(m.restarts, "restarts", (name,), inst.restarts, inst.name)
                self._add(m.dropped, "dropped", (name, "malformed"), inst.malformed, inst.name)
            for state, count in counts.items():
                m.instances.labels(name, state).set(count)
            m.queue.labels(name).set(len(pool.queue))
            m.in_flight.labels(name).set(sum(len(i.inflight) for i in pool.instances))
            boots, pool.boot_times = pool.boot_times, []
            for seconds in boots:
                m.boot.labels(name).observe(seconds)

    def _add(self, counter, what, labels, total, key=None):
        """Add to `counter` what `total` (a cumulative count of this worker) grew by."""
        key = (what, labels, key)
        grown = total - self._last.get(key, 0)
        if grown > 0:
            (counter.labels(*labels) if labels else counter).inc(grown)
        self._last[key] = total

    def render(self, app) -> bytes:
        """Every worker's metrics in the Prometheus text format (this worker's as of now)."""
        self.publish(app)
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry, statedir.path())
        return generate_latest(registry)

    def request_counts(self, app):
        """{(server, location, status class): requests} over every worker, past ones too."""
        self.publish(app)
        from prometheus_client.multiprocess import MultiProcessCollector
        out = {}
        for family in MultiProcessCollector(None, statedir.path()).collect():
            if family.name == "gateway_http_requests":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        labels = sample.labels
                        key = (labels["server"], labels["location"], labels["status"])
                        out[key] = out.get(key, 0) + int(sample.value)
        return out


CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def server_label(server) -> str:
    """A server's name in labels: its first server_name, else its first listen address."""
    if server is None:
        return ""
    names = [n for n in server.server_names if n]
    if names:
        return names[0]
    if server.listens:
        listen = server.listens[0]
        return f"{listen.host}:{listen.port}"
    return ""


def location_label(location) -> str:
    """A location as written: "= /status", "/api/", "~ \\.php$", "@fallback"; "" for none."""
    if location is None:
        return ""
    if location.modifier == "@":
        return "@" + location.pattern
    return f"{location.modifier} {location.pattern}" if location.modifier else location.pattern


def peer_state(peer, now: float) -> str:
    """up, down (configured so), unhealthy (health check) or failed (max_fails reached)."""
    if peer.down:
        return "down"
    if not peer.healthy:
        return "unhealthy"
    if peer.max_fails and peer.fails >= peer.max_fails and now - peer.checked <= peer.fail_timeout:
        return "failed"
    return "up"


class _Metrics:
    """The prometheus_client metrics of one worker, made after fork (multiprocess mode)."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram, values
        if not getattr(values.ValueClass, "_multiprocess", False):
            # Chosen when prometheus_client was first imported; force the multiprocess files.
            values.ValueClass = values.MultiProcessValue()
        kw = {"registry": None}
        self.requests = Counter("gateway_http_requests", "Requests answered, by server, location "
                                "and status class", ["server", "location", "status"], **kw)
        self.duration = Histogram("gateway_http_request_duration_seconds", "Time from the first "
                                  "byte of the request head to the log phase",
                                  ["server", "location"], buckets=BOUNDS, **kw)
        self.connections = Gauge("gateway_connections", "Client connections now, by state "
                                 "(stub_status's)", ["state"], multiprocess_mode="livesum", **kw)
        self.accepted = Counter("gateway_connections_accepted", "Client connections accepted",
                                **kw)
        self.handled = Counter("gateway_connections_handled", "Client connections handled", **kw)
        self.peer_state = Gauge("gateway_upstream_peer_state", "Worker processes that see the "
                                "peer in this state", ["upstream", "peer", "state"],
                                multiprocess_mode="livesum", **kw)
        self.peer_connections = Gauge("gateway_upstream_peer_connections", "Requests in progress "
                                      "to the peer", ["upstream", "peer"],
                                      multiprocess_mode="livesum", **kw)
        self.instances = Gauge("gateway_unikernel_instances", "Unikernel instances by state",
                               ["pool", "state"], multiprocess_mode="livesum", **kw)
        self.restarts = Counter("gateway_unikernel_restarts", "Unikernel instance restarts",
                                ["pool"], **kw)
        self.boot = Histogram("gateway_unikernel_boot_seconds", "From QEMU start to the first "
                              "answer of an instance", ["pool"], buckets=BOOT_BOUNDS, **kw)
        self.queue = Gauge("gateway_unikernel_queue_depth", "Requests waiting for a free "
                           "instance", ["pool"], multiprocess_mode="livesum", **kw)
        self.in_flight = Gauge("gateway_unikernel_in_flight", "Requests sent to instances and "
                               "not answered yet", ["pool"], multiprocess_mode="livesum", **kw)
        self.dropped = Counter("gateway_unikernel_frames_dropped", "Frames from instances "
                               "dropped, by reason", ["pool", "reason"], **kw)
