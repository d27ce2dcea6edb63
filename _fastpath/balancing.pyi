"""Type stub for the compiled twins of gateway/upstream/balancers/{base,least_conn}.py."""

from typing import Callable, Iterator

from gateway.config.model import Upstream, UpstreamServer

class Peer:
    index: int
    name: str
    host: str
    port: int
    weight: int
    max_fails: int
    fail_timeout: float
    max_conns: int
    backup: bool
    down: bool
    healthy: bool
    conns: int
    fails: int
    effective_weight: int
    current_weight: int
    accessed: float
    checked: float
    header_time: float | None
    response_time: float | None
    def __init__(self, server: UpstreamServer, index: int = 0) -> None: ...
    @property
    def address(self) -> tuple[str, int]: ...
    def excluded(self, now: float) -> bool: ...
    def record_times(self, header_time: float | None, response_time: float | None) -> None: ...

class Selection(Iterator[Peer]):
    def __iter__(self) -> Selection: ...
    def __next__(self) -> Peer: ...

class RoundRobin:
    method: str
    uses_backup: bool
    upstream: Upstream
    name: str
    key_template: str | None
    peers: list[Peer]
    backup: list[Peer]
    single: bool
    total_weight: int
    now: Callable[[], float]
    def __init__(self, upstream: Upstream, now: Callable[[], float] = ...) -> None: ...
    @property
    def all_peers(self) -> list[Peer]: ...
    def select(self, key: str | bytes | None = None) -> Selection: ...
    def release(self, peer: Peer, failed: bool, header_time: float | None = None,
                response_time: float | None = None) -> None: ...

class LeastConn(RoundRobin):
    def load(self, peer: Peer) -> float: ...
