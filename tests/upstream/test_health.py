"""Active health checks against real aiohttp servers, and passive health with real processes."""

import asyncio

import aiohttp
import pytest
from aiohttp import web

from gateway.config.model import HealthCheck
from gateway.upstream import build_balancer, start_health_checks
from gateway.upstream.health import probe

from .helpers import upstream

FAST_CHECK = HealthCheck(interval=0.05, uri="/health", fails=2, passes=2, timeout=0.5)


class Backend:
    """A real aiohttp server on a loopback port that can answer badly, stop and come back."""

    def __init__(self, name):
        self.name = name
        self.status = 200
        self.port = 0
        self.runner = None
        self.probes = 0

    async def start(self):
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/", self.hello)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self):
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def health(self, request):
        self.probes += 1
        if self.status == "slow":
            await asyncio.sleep(1)
        return web.Response(status=200 if self.status == "slow" else self.status, text="h")

    async def hello(self, request):
        return web.Response(text=self.name)


@pytest.fixture
async def backends():
    started = [Backend(name) for name in ("a", "b", "c")]
    try:
        for backend in started:
            await backend.start()
        yield started
    finally:
        for backend in started:
            await backend.stop()


def pool(backends, check=FAST_CHECK, **servers):
    up = upstream(*[(f"127.0.0.1:{b.port}", servers) for b in backends])
    for server, backend in zip(up.servers, backends):
        server.port = backend.port
    up.health_check = check
    return up


async def until(condition, seconds=10.0):
    """Wait for ``condition()`` to hold (generous bound, not a timing assert)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def test_probe_outcomes(backends):
    a = backends[0]
    peer = build_balancer(pool(backends)).peers[0]
    assert await probe(peer, FAST_CHECK)
    a.status = 302
    assert await probe(peer, FAST_CHECK)
    a.status = 500
    assert not await probe(peer, FAST_CHECK)
    a.status = "slow"
    assert not await probe(peer, HealthCheck(uri="/health", timeout=0.2))
    await a.stop()
    assert not await probe(peer, FAST_CHECK)


async def test_garbage_answer_fails_the_probe():
    async def garbage(reader, writer):
        await reader.readline()
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        up = upstream(f"127.0.0.1:{port}")
        up.servers[0].port = port
        assert not await probe(build_balancer(up).peers[0], FAST_CHECK)
    finally:
        server.close()
        await server.wait_closed()


async def test_unhealthy_peer_leaves_rotation_and_returns(backends):
    balancer = build_balancer(pool(backends))
    handle = start_health_checks([balancer], asyncio.get_running_loop())
    try:
        a, b, c = balancer.peers
        backends[1].status = 503
        await until(lambda: not b.healthy)
        assert a.healthy and c.healthy
        chosen = set()
        for _ in range(12):
            peer = next(balancer.select())
            chosen.add(peer.name)
            balancer.release(peer, False)
        assert b.name not in chosen
        backends[1].status = 200
        await until(lambda: b.healthy)
        await backends[2].stop()
        await until(lambda: not c.healthy)
        await backends[2].start()
        await until(lambda: c.healthy)
    finally:
        handle.stop()


async def test_thresholds_need_consecutive_results(backends):
    check = HealthCheck(interval=0.02, uri="/health", fails=3, passes=3, timeout=0.5)
    balancer = build_balancer(pool(backends, check))
    handle = start_health_checks({"backend": balancer})
    try:
        peer = balancer.peers[0]
        await until(lambda: backends[0].probes >= 2)
        # The handler reads the status right after counting, so every probe
        # counted from here on answers 500.
        backends[0].status = 500
        start = backends[0].probes
        await until(lambda: not peer.healthy)
        assert backends[0].probes - start >= 3
        backends[0].status = 200
        start = backends[0].probes
        await until(lambda: peer.healthy)
        assert backends[0].probes - start >= 3
    finally:
        handle.stop()


async def test_stop_cancels_the_probes_and_ignores_unchecked_upstreams(backends):
    checked = build_balancer(pool(backends))
    unchecked = build_balancer(pool(backends, check=None))
    handle = start_health_checks([checked, unchecked])
    assert len(handle.tasks) == 1
    tasks = list(handle.tasks)
    handle.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)


async def test_passive_health_with_a_real_server_killed_and_restarted(backends):
    """Idempotent requests keep succeeding; the restarted peer is back after fail_timeout."""
    up = pool(backends[:2], check=None, max_fails=1, fail_timeout=1.0)
    balancer = build_balancer(up)

    async def request(session):
        for peer in balancer.select():
            try:
                async with session.get(f"http://{peer.host}:{peer.port}/") as response:
                    body = await response.text()
            except aiohttp.ClientError:
                balancer.release(peer, True)
                continue
            balancer.release(peer, False)
            return body
        return None

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        assert {await request(session) for _ in range(4)} == {"a", "b"}
        await backends[1].stop()
        answers = [await request(session) for _ in range(20)]
        assert answers == ["a"] * 20
        await backends[1].start()
        seen_b = False
        deadline = asyncio.get_running_loop().time() + 10
        while not seen_b and asyncio.get_running_loop().time() < deadline:
            answer = await request(session)
            assert answer in ("a", "b")
            seen_b = answer == "b"
            await asyncio.sleep(0.05)
        assert seen_b
