"""Small builders shared by the upstream unit tests."""

from gateway.config.model import Balance, Upstream, UpstreamServer


class Clock:
    """A controllable clock to inject as a balancer's ``now``."""

    def __init__(self, start: float = 1000.0):
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


def upstream(*servers, method="round_robin", **balance) -> Upstream:
    """An Upstream from (name, {server options}) pairs or plain names; ports follow the order."""
    built = []
    for i, server in enumerate(servers):
        name, options = (server, {}) if isinstance(server, str) else server
        built.append(UpstreamServer(name=name, host="127.0.0.1", port=9000 + i, **options))
    return Upstream(name="backend", servers=built, balance=Balance(method=method, **balance))


def pick(balancer, key=None, failed=False):
    """Select one peer, report the outcome at once and return its name."""
    peer = next(balancer.select(key), None)
    if peer is None:
        return None
    balancer.release(peer, failed)
    return peer.name


def sequence(balancer, count, key=None):
    return [pick(balancer, key) for _ in range(count)]
