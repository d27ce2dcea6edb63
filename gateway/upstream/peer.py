"""One upstream server as the balancers see it: its configuration plus runtime state."""

from __future__ import annotations

from gateway.config.model import UpstreamServer

# Weight of a new sample in the response-time averages used by least_time.
EWMA_ALPHA = 0.3


class Peer:
    """An upstream server (one resolved address) and its per-worker state."""

    __slots__ = (
        "index", "name", "host", "port", "weight", "max_fails", "fail_timeout",
        "max_conns", "backup", "down",
        "conns", "fails", "accessed", "checked", "effective_weight", "current_weight",
        "healthy", "header_time", "response_time",
    )

    def __init__(self, server: UpstreamServer, index: int = 0):
        self.index = index                    # position in its list (nginx's tried bit)
        self.name = server.name
        self.host = server.host
        self.port = server.port
        self.weight = server.weight
        self.max_fails = server.max_fails
        self.fail_timeout = server.fail_timeout
        self.max_conns = server.max_conns
        self.backup = server.backup
        self.down = server.down
        self.conns = 0
        self.fails = 0
        self.accessed = 0.0                   # time of the last failure
        self.checked = 0.0                    # start of the current fail_timeout window
        self.effective_weight = server.weight
        self.current_weight = 0
        self.healthy = True                   # set by active health checks
        self.header_time = None               # EWMA seconds, None until sampled
        self.response_time = None

    @property
    def address(self) -> tuple[str, int]:
        """Where to connect: (host, port)."""
        return (self.host, self.port)

    def excluded(self, now: float) -> bool:
        """True when the peer may not take a request now (down, unhealthy, failed or full)."""
        # nginx: a peer that reached max_fails is skipped while its fail_timeout
        # window (started at the last failure) lasts.
        return (self.down or not self.healthy
                or (self.max_fails and self.fails >= self.max_fails
                    and now - self.checked <= self.fail_timeout)
                or (self.max_conns and self.conns >= self.max_conns))

    def record_times(self, header_time: float | None, response_time: float | None) -> None:
        """Fold one successful request's latencies into the moving averages."""
        if header_time is not None:
            old = self.header_time
            self.header_time = header_time if old is None else old + EWMA_ALPHA * (header_time - old)
        if response_time is not None:
            old = self.response_time
            self.response_time = (response_time if old is None
                                  else old + EWMA_ALPHA * (response_time - old))

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.host}:{self.port} conns={self.conns} fails={self.fails}>"
