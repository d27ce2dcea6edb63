"""`status_json;`: the state of every worker process as one JSON document (README "Status API").

Each worker writes its live state (connections, upstream peers as it sees them, its unikernel
pools and instances) to status_PID.json in the shared directory (gateway/observe/statedir.py)
once a second; the answering worker merges those files with the request counts of the
prometheus_client store, which keeps the counts of workers that have exited.
"""

from __future__ import annotations

import glob
import os
import time

import orjson

from gateway import __version__
from gateway.observe import metrics, statedir

SEVERITY = {state: rank for rank, state in enumerate(metrics.PEER_STATES)}
CONTENT_TYPE = b"application/json"


def snapshot(app) -> dict:
    """This worker's live state."""
    now = time.monotonic()
    accepts, handled, _, active, reading, writing, waiting = metrics.stub_status.publish(app)
    upstreams = {}
    for name, upstream in app.upstreams.items():
        upstreams[name] = [
            {"server": f"{peer.host}:{peer.port}", "name": peer.name, "weight": peer.weight,
             "backup": bool(peer.backup), "state": metrics.peer_state(peer, now),
             "active": peer.conns, "fails": peer.fails}
            for peer in upstream.balancer.all_peers]
    pools = {}
    for name, pool in (getattr(app.unikernels, "pools", None) or {}).items():
        pools[name] = {
            "transport": pool.transport, "accelerator": pool.accel, "min": pool.config.min_instances,
            "max": pool.config.max_instances, "spares": pool.config.spares, "queued": len(pool.queue),
            "instances": [{"name": i.name, "state": i.state, "pid": i.pid, "restarts": i.restarts,
                           "accelerator": i.accel, "last_exit": i.last_exit or None,
                           "in_flight": len(i.inflight), "served": i.served,
                           "malformed_frames": i.malformed} for i in pool.instances]}
    return {"pid": os.getpid(), "connections": {
                "accepted": accepts, "handled": handled, "active": active, "reading": reading,
                "writing": writing, "waiting": waiting},
            "upstreams": upstreams, "unikernels": pools}


def publish(app) -> dict:
    """Write this worker's snapshot for the others (atomically); the snapshot."""
    state = snapshot(app)
    target = statedir.status_file(state["pid"])
    tmp = target + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(state))
        os.replace(tmp, target)
    except OSError:
        pass        # the directory went away: the master is exiting
    return state


def _workers(own: dict) -> list[dict]:
    states = [own]
    for path in glob.glob(os.path.join(statedir.path(), statedir.STATUS_PREFIX + "*.json")):
        try:
            with open(path, "rb") as fh:
                state = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError):
            continue     # removed or being replaced meanwhile
        if state.get("pid") != own["pid"]:
            states.append(state)
    return sorted(states, key=lambda s: s["pid"])


def _by_class(counts: dict) -> dict:
    out = {"total": sum(counts.values())}
    out.update({f"{i}xx": counts.get(f"{i}xx", 0) for i in range(1, 6)})
    return out


def render(app) -> bytes:
    """The status document (shape: README "Status API")."""
    workers = _workers(publish(app))
    counts = app.meter.request_counts(app)
    servers = []
    for server in app.config.http.servers:
        label = metrics.server_label(server)
        mine = {k: v for k, v in counts.items() if k[0] == label}
        by_location: dict[str, dict] = {}
        for (_, location, status), value in mine.items():
            entry = by_location.setdefault(location, {})
            entry[status] = entry.get(status, 0) + value
        overall = _per_class(mine)
        servers.append({
            "name": label, "server_names": server.server_names,
            "listen": [f"{l.host}:{l.port}" for l in server.listens],
            "requests": _by_class(overall),
            "locations": [{"location": loc, "requests": _by_class(c)}
                          for loc, c in sorted(by_location.items())]})
    connections = {}
    for state in workers:
        for key, value in state["connections"].items():
            connections[key] = connections.get(key, 0) + value
    return orjson.dumps({
        "version": __version__, "time": time.time(),
        "workers": [{"pid": s["pid"]} for s in workers],
        "connections": connections,
        "requests": _by_class(_per_class(counts)),
        "servers": servers,
        "upstreams": _upstreams(workers),
        "unikernels": _unikernels(workers),
    }, option=orjson.OPT_INDENT_2)


def _per_class(counts: dict) -> dict:
    out: dict[str, int] = {}
    for (_, _, status), value in counts.items():
        out[status] = out.get(status, 0) + value
    return out


def _upstreams(workers) -> dict:
    """Each peer once: its state as most workers see it (ties: the worse), counts summed."""
    out = {}
    for state in workers:
        for name, peers in state["upstreams"].items():
            merged = out.setdefault(name, {"peers": {}})["peers"]
            for peer in peers:
                entry = merged.setdefault(peer["server"], {
                    "server": peer["server"], "name": peer["name"], "weight": peer["weight"],
                    "backup": peer["backup"], "active": 0, "fails": 0,
                    "workers": dict.fromkeys(metrics.PEER_STATES, 0)})
                entry["active"] += peer["active"]
                entry["fails"] += peer["fails"]
                entry["workers"][peer["state"]] += 1
    for upstream in out.values():
        peers = list(upstream["peers"].values())
        for peer in peers:
            seen = peer["workers"]
            peer["state"] = max(seen, key=lambda s: (seen[s], SEVERITY[s]))
        upstream["peers"] = peers
    return out


def _unikernels(workers) -> dict:
    """Each pool once, its instances from every worker (each tagged with its worker's pid)."""
    out = {}
    for state in workers:
        for name, pool in state["unikernels"].items():
            entry = out.setdefault(name, {
                "transport": pool["transport"], "accelerator": pool["accelerator"],
                "min": pool["min"], "max": pool["max"], "spares": pool["spares"], "queued": 0,
                "instances": []})
            entry["queued"] += pool["queued"]
            entry["instances"].extend(dict(inst, worker=state["pid"])
                                      for inst in pool["instances"])
    return out
