"""Active health checks: probe ``GET uri`` on every peer and take peers in and out.

nginx's open-source build has none; this follows the ``health_check`` of its
commercial version: ``fails`` consecutive failed probes mark a peer unhealthy,
``passes`` consecutive good ones (2xx or 3xx) bring it back.
"""

from __future__ import annotations

import asyncio

from gateway.config.model import HealthCheck
from gateway.observe.errorlog import log
from gateway.upstream.peer import Peer

_MAX_STATUS_LINE = 1024


async def probe(peer: Peer, check: HealthCheck) -> bool:
    """One HTTP/1.0 ``GET uri`` to ``peer``; True for a 2xx or 3xx answer within the timeout."""
    try:
        return await asyncio.wait_for(_probe(peer, check), check.timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        return False


async def _probe(peer: Peer, check: HealthCheck) -> bool:
    reader, writer = await asyncio.open_connection(peer.host, peer.port)
    try:
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        writer.write(f"GET {check.uri} HTTP/1.0\r\nHost: {host}\r\n"
                     "User-Agent: gateway-health-check\r\n\r\n".encode("latin-1"))
        line = await reader.readline()
        if len(line) > _MAX_STATUS_LINE:
            return False
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return False
        return 200 <= int(parts[1]) < 400
    finally:
        writer.close()


class _PeerState:
    __slots__ = ("fails", "passes")

    def __init__(self):
        self.fails = 0
        self.passes = 0


async def check_upstream(balancer, check: HealthCheck) -> None:
    """Probe every peer of ``balancer`` each ``check.interval`` seconds, forever."""
    states = {id(peer): _PeerState() for peer in balancer.all_peers}
    while True:
        peers = balancer.all_peers
        results = await asyncio.gather(*(probe(peer, check) for peer in peers))
        for peer, ok in zip(peers, results):
            _account(balancer.name, peer, states[id(peer)], check, ok)
        await asyncio.sleep(check.interval)


def _account(upstream: str, peer: Peer, state: _PeerState, check: HealthCheck, ok: bool) -> None:
    if ok:
        state.fails = 0
        state.passes += 1
        if not peer.healthy and state.passes >= check.passes:
            peer.healthy = True
            log.warn(f'upstream server {peer.name} in "{upstream}" passed health checks, '
                     "back in rotation")
    else:
        state.passes = 0
        state.fails += 1
        if peer.healthy and state.fails >= check.fails:
            peer.healthy = False
            log.warn(f'upstream server {peer.name} in "{upstream}" failed health checks, '
                     "taken out of rotation")


class HealthChecks:
    """The running checks of one worker; ``stop()`` cancels them."""

    def __init__(self, tasks: list[asyncio.Task]):
        self.tasks = tasks

    def stop(self) -> None:
        """Cancel every probe loop."""
        for task in self.tasks:
            task.cancel()
        self.tasks = []


def start_health_checks(balancers, loop: asyncio.AbstractEventLoop | None = None) -> HealthChecks:
    """One probe task per balancer whose upstream has ``health_check``, in ``loop``."""
    if isinstance(balancers, dict):
        balancers = balancers.values()
    loop = loop or asyncio.get_event_loop()
    tasks = [loop.create_task(check_upstream(balancer, balancer.upstream.health_check),
                              name=f"health_check {balancer.name}")
             for balancer in balancers if balancer.upstream.health_check is not None]
    return HealthChecks(tasks)
