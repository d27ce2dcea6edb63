"""Type stub for the compiled twin of gateway/unikernel/pool_core.py and dispatch.py's exchange."""

from typing import Any

from _fastpath.ukservices import build_request as build_request, read_reply as read_reply

class Call:
    op: Any
    payload: bytes
    key: bytes | None
    owner: Any
    instance: Any
    idempotent: bool
    done: bool
    nframes: int
    tries: int
    req_id: int
    sent_at: float
    def __init__(self, op: int, payload: bytes, key: bytes | None, idempotent: bool, owner: Any) -> None: ...

def fail_call(call: Call, status: int, why: str) -> None: ...

class InstanceCore:
    name: str
    state: str
    fd: int
    guest_mac: bytes
    host_mac: bytes
    inflight: dict[int, Call]
    inflight_frames: int
    malformed: int
    served: int
    outbox: list[bytes]
    writing: bool
    reassembler: Any
    last_pong: float

class PoolCore:
    name: str
    loop: Any
    tunables: Any
    method: str
    queue: Any
    instances: list[Any]
    closed: bool
    latency_sum: float
    latency_count: int
    def _core_init(self, name: str, loop: Any, tunables: Any, method: str) -> None: ...
    def next_id(self) -> int: ...
    def submit(self, call: Call) -> None: ...
    def cancel(self, call: Call) -> None: ...
    def take_latency(self) -> tuple[float, int]: ...
    def _dispatch(self, inst: Any, call: Call) -> None: ...
    def _drain(self) -> None: ...
    def _send(self, inst: Any, frames: list[bytes]) -> None: ...
    def _flush(self) -> None: ...
    def _push(self, inst: Any) -> None: ...
    def _readable(self, inst: InstanceCore) -> None: ...
    def _after_reply(self, inst: Any) -> None: ...

def start_exchange(conn: Any, request: Any, plan: Any, app: Any) -> None: ...

class UnikernelExchange:
    conn: Any
    request: Any
    plan: Any
    app: Any
    service: str
    key: Any
    pool: PoolCore
    body: list[bytes] | None
    body_size: int
    call: Call | None
    deadline: float
    done: bool
    def __init__(self, conn: Any, request: Any, plan: Any, app: Any, pool: PoolCore, service: str,
                 key: Any) -> None: ...
    def start(self) -> None: ...
    def client_body(self, pieces: list[bytes]) -> None: ...
    def client_body_end(self) -> None: ...
    def client_aborted(self) -> None: ...
    def cancel(self) -> None: ...
    def client_write_paused(self) -> None: ...
    def client_write_resumed(self) -> None: ...
    def check_deadline(self, now: float) -> None: ...
    def unikernel_reply(self, status: int, payload: bytes) -> None: ...
    def unikernel_failed(self, status: int, why: str) -> None: ...
