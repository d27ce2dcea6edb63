"""Pools inside this test's own event loop, on real QEMU: limits, crash loops, settings, clean stop."""

import asyncio
import os
import shutil
import signal

import pytest

from gateway.config.model import Balance, UnikernelPool
from gateway.errors import LaunchFailed
from gateway.unikernel.pool import Call
from gateway.unikernel.service import UnikernelPools
from gateway.unikernel.tunables import Tunables
from gateway.unikernel.wire import Op, Status


class Owner:
    """Stands in for the HTTP handler: resolves a future with what the pool answered."""

    def __init__(self, loop):
        self.future = loop.create_future()

    def unikernel_reply(self, status, payload):
        self.future.set_result((status, payload))

    def unikernel_failed(self, status, why):
        self.future.set_result((status, why))


@pytest.fixture
async def pools(tmp_path):
    """pools(**configs) -> started UnikernelPools; stopped at teardown, every QEMU killed by pid."""
    started = []

    async def start(**configs):
        p = UnikernelPools(configs, asyncio.get_running_loop(), str(tmp_path))
        started.append(p)
        await p.start()
        return p
    try:
        yield start
    finally:
        for p in started:
            pids = [i.pid for pool in p.pools.values() for i in pool.instances + pool.paused if i.pid]
            p.stop()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)    # only if stop() missed it; then the assert below fails
                except ProcessLookupError:
                    continue
                raise AssertionError(f"QEMU {pid} survived stop()")


async def until(predicate, timeout=10.0):
    """Wait (on the loop) until predicate() is true; fail after timeout."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def ask(pool, op, payload=b"", key=None):
    owner = Owner(asyncio.get_running_loop())
    pool.submit(Call(op, payload, key, True, owner))
    return await asyncio.wait_for(owner.future, 10)


@pytest.mark.qemu
async def test_in_flight_limit_is_kept_and_the_rest_queue(pools):
    p = await pools(echo=UnikernelPool("echo", "echo", 1, 1, transport="socketpair",
                                       settings={"max_inflight": "2"}))
    pool = p.pools["echo"]
    inst = pool.instances[0]
    peak = 0
    sizes = [0, 10, 5000, 70_000] * 8

    async def one(n, size):
        nonlocal peak
        payload = os.urandom(size)
        waiter = asyncio.ensure_future(ask(pool, Op.ECHO, payload))
        await asyncio.sleep(0)
        peak = max(peak, len(inst.inflight))
        assert await waiter == (Status.OK, payload)

    await asyncio.gather(*(one(n, s) for n, s in enumerate(sizes)))
    assert peak == 2 and len(pool.queue) == 0 and inst.served == len(sizes)


@pytest.mark.qemu
async def test_hash_keeps_a_key_on_its_instance(pools):
    p = await pools(kv=UnikernelPool("kv", "kv", 3, 3, transport="socketpair",
                                     balance=Balance("hash", key="$uri", consistent=True)))
    pool = p.pools["kv"]
    for n in range(30):
        key = b"key%d" % n
        put = (0).to_bytes(4, "little") + len(key).to_bytes(2, "little") + key + b"v"
        assert (await ask(pool, Op.KV_PUT, put, key))[0] == Status.OK
    for n in range(30):
        assert await ask(pool, Op.KV_GET, b"key%d" % n, b"key%d" % n) == (Status.OK, b"v")
    assert all(i.served > 0 for i in pool.instances)


@pytest.mark.qemu
async def test_a_crash_looping_instance_is_marked_failed(pools, tmp_path):
    # An image QEMU cannot load: every start exits at once.
    bogus = tmp_path / "echo.elf"
    bogus.write_bytes(b"not an ELF file")
    p = await pools(echo=UnikernelPool("echo", str(bogus), 1, 1, transport="socketpair",
                                       settings={"crash_limit": "3", "backoff_min": "10ms"}))
    pool = p.pools["echo"]
    inst = pool.instances[0]
    assert inst.state == "failed" and inst.restarts == 3
    assert inst.last_exit == "exited with status 1 (qemu: invalid kernel header)"
    assert await ask(pool, Op.ECHO, b"x") == (502, 'no live instance in unikernel "echo"')
    with open(inst.stderr_log) as fh:
        assert fh.read().count("invalid kernel header") == 4     # QEMU's own words, kept per start
    # The paused QEMU the pool keeps cannot load either: it is given up after the same crash limit.
    await until(lambda: not pool.paused and not pool._prestarting)
    with open(os.path.join(p.log_dir, f"echo-paused.{os.getpid()}.stderr")) as fh:
        assert fh.read().count("invalid kernel header") == 4


@pytest.mark.qemu
async def test_stop_is_bounded_and_removes_taps(pools):
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.fail("this test needs root and iproute2 (both present where the suite runs)")
    p = await pools(echo=UnikernelPool("echo", "echo", 2, 2, transport="tap"))
    names = [i.link.name for i in p.pools["echo"].instances]
    assert all(os.path.exists(f"/sys/class/net/{n}") for n in names)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    p.stop()
    assert loop.time() - t0 < 2.0
    assert not [n for n in names if os.path.exists(f"/sys/class/net/{n}")]


def test_settings_split_between_gateway_and_guest():
    tunables, guest = Tunables.split({"request_timeout": "500ms", "max_inflight": "4", "key": "abcd",
                                      "scale_up_latency": "0.02"})
    assert (tunables.request_timeout, tunables.max_inflight, tunables.scale_up_latency) == (0.5, 4, 0.02)
    assert guest == {"key": "abcd"}
    with pytest.raises(LaunchFailed, match='invalid value "lots" in unikernel setting "max_inflight"'):
        Tunables.split({"max_inflight": "lots"})


async def test_unknown_service_is_one_clear_sentence(pools, tmp_path):
    image = tmp_path / "thing.elf"
    image.write_bytes(b"x")
    with pytest.raises(LaunchFailed) as caught:
        await pools(thing=UnikernelPool("thing", str(image), transport="socketpair"))
    assert str(caught.value) == 'unikernel "thing": unknown service "thing": the gateway speaks to echo, kv, ' \
                                'static, auth, webhook'


@pytest.mark.qemu
async def test_a_full_queue_answers_503(pools):
    p = await pools(echo=UnikernelPool("echo", "echo", 1, 1, transport="socketpair",
                                       settings={"max_inflight": "1", "queue_limit": "2"}))
    answers = await asyncio.gather(*(ask(p.pools["echo"], Op.ECHO, b"x") for _ in range(6)))
    assert sorted(a[0] for a in answers) == [Status.OK] * 3 + [503] * 3
    assert (503, 'queue of unikernel "echo" is full') in answers


@pytest.mark.qemu
async def test_a_spare_stands_by_and_takes_over_before_the_dead_instance_is_back(pools):
    p = await pools(echo=UnikernelPool("echo", "echo", 1, 1, spares=1, transport="socketpair"))
    pool = p.pools["echo"]
    serving, spare = pool.instances
    assert (serving.state, spare.state) == ("ready", "starting")     # spares boot after the pool is up
    await until(lambda: spare.state == "spare")
    for n in range(20):
        assert await ask(pool, Op.ECHO, b"%d" % n) == (Status.OK, b"%d" % n)
    assert (serving.served, spare.served) == (20, 0)       # a spare takes no requests
    waiting = [asyncio.ensure_future(ask(pool, Op.ECHO, b"in flight %d" % n)) for n in range(4)]
    await asyncio.sleep(0)
    os.kill(serving.pid, signal.SIGKILL)
    # Answered (the in-flight ones retried) by the spare while the killed one still boots again.
    assert [await w for w in waiting] == [(Status.OK, b"in flight %d" % n) for n in range(4)]
    assert await ask(pool, Op.ECHO, b"after") == (Status.OK, b"after")
    assert spare.state == "ready" and spare.served >= 1
    assert serving.state in ("restarting", "starting") and serving.spare
    # The killed one comes back as the spare: one serving and one standing by, as configured.
    await until(lambda: serving.state == "spare")
    assert (serving.state, serving.restarts, spare.state) == ("spare", 1, "ready")
    assert [i.name for i in pool.active()] == [spare.name]


@pytest.mark.qemu
@pytest.mark.parametrize("transport", ["socketpair", "tap"])
async def test_a_restart_resumes_the_paused_qemu_on_its_link_and_another_is_started(pools, transport):
    p = await pools(echo=UnikernelPool("echo", "echo", 1, 1, prestart=1, transport=transport))
    pool = p.pools["echo"]
    inst = pool.instances[0]
    await until(lambda: [q.state for q in pool.paused] == ["paused"])
    paused = pool.paused[0]
    old_link, old_pid = inst.link, inst.pid
    waiting = [asyncio.ensure_future(ask(pool, Op.ECHO, b"in flight %d" % n)) for n in range(4)]
    await asyncio.sleep(0)
    os.kill(old_pid, signal.SIGKILL)
    # Retried once the instance is back: on the paused QEMU, which took its link along.
    assert [await w for w in waiting] == [(Status.OK, b"in flight %d" % n) for n in range(4)]
    assert (inst.pid, inst.link, inst.restarts, inst.state) == (paused.pid, paused.link, 1, "ready")
    assert inst.fd == paused.link.fileno() and inst.guest_mac != old_link.guest_mac.encode()
    # Another paused QEMU is started, on the link the instance left.
    await until(lambda: [q.state for q in pool.paused] == ["paused"] and pool.paused[0] is not paused)
    assert pool.paused[0].link is old_link and pool.paused[0].pid not in (old_pid, paused.pid)
    # The resumed guest printed into the instance's own console, after the first boot's lines.
    with open(inst.console_log) as fh:
        assert fh.read().count(" ready") == 2
    # The next restart resumes that one, back on the first link.
    second = pool.paused[0]
    os.kill(inst.pid, signal.SIGKILL)
    await until(lambda: inst.state == "ready" and inst.restarts == 2)
    assert (inst.pid, inst.link) == (second.pid, old_link)
    assert await ask(pool, Op.ECHO, b"after") == (Status.OK, b"after")
