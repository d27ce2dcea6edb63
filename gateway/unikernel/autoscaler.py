"""Grows a pool toward MAX while load or latency stays high, shrinks it toward MIN after a quiet period.

The thresholds are the scale_* fields of tunables.Tunables. Every scale_interval the autoscaler samples
the pool: load = (requests in flight + queued) / ready instances, and the mean reply latency since the
last sample. scale_up_ticks samples in a row above scale_up_load or scale_up_latency add one instance
(never while another is still booting); a booted spare (`spares`) is put in service at once and a new
spare boots behind it. No request in flight, queued or answered for scale_down_idle retires the newest
instance, drained first so nothing is dropped.
"""

from gateway.errors import UnikernelError
from gateway.unikernel.instance import READY, STARTING


class Autoscaler:
    """Samples one pool on the event loop and adds or retires instances."""

    def __init__(self, pool, loop):
        self.pool = pool
        self.loop = loop
        self.tunables = pool.tunables
        self.high = 0
        self.quiet_since = loop.time()
        self._timer = None

    def start(self):
        """Begin sampling (only useful when MAX > MIN)."""
        if self.pool.config.max_instances > self.pool.config.min_instances:
            self._timer = self.loop.call_later(self.tunables.scale_interval, self._tick)

    def stop(self):
        """Stop sampling."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self):
        pool, t = self.pool, self.tunables
        now = self.loop.time()
        active = pool.active()
        ready = sum(i.state == READY for i in active)
        busy = sum(len(i.inflight) for i in pool.instances) + len(pool.queue)
        latency, replies = pool.take_latency()
        if busy / max(1, ready) > t.scale_up_load or latency > t.scale_up_latency:
            self.high += 1
        else:
            self.high = 0
        booting = any(i.state == STARTING for i in active)
        if self.high >= t.scale_up_ticks and len(active) < pool.config.max_instances and not booting:
            self.high = 0
            added = pool.promote_spare()
            try:
                if added is not None:
                    pool.add_instance(spare=True)      # the spare's replacement
                else:
                    added = pool.add_instance()
            except UnikernelError as exc:
                pool.log("error", f'unikernel "{pool.name}" cannot scale up: {exc}')
            if added is not None:
                pool.log("notice", f'unikernel "{pool.name}" scaled up to {len(active) + 1} instances')
        if busy or replies:
            self.quiet_since = now
        elif now - self.quiet_since >= t.scale_down_idle and len(active) > pool.config.min_instances:
            self.quiet_since = now
            newest = max(active, key=lambda i: i.index)
            pool.retire_instance(newest)
            pool.log("notice", f'unikernel "{pool.name}" scaled down to {len(active) - 1} instances')
        self._timer = self.loop.call_later(t.scale_interval, self._tick)
