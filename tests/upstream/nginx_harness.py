"""A real nginx with tiny named backends and proxied upstream blocks, for side-by-side tests."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from gateway.config.model import Balance, Upstream, UpstreamServer

NGINX = "/usr/sbin/nginx"


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago and not handed out before."""
    # The kernel may give the same ephemeral port to two successive bind(0)
    # calls once the first socket is closed; two backends on one port would
    # share a listener in nginx.
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class Backend:
    """One ``server`` line: a named backend answering its name, or a dead port."""

    name: str
    weight: int = 1
    max_fails: int = 1
    fail_timeout: int = 10
    max_conns: int = 0
    backup: bool = False
    down: bool = False
    dead: bool = False        # nothing listens: connections are refused
    external: bool = False    # the test runs its own server on ``port``
    host_name: str = "127.0.0.1"   # as written in the upstream block; must resolve to 127.0.0.1
    port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def written(self) -> str:
        return f"{self.host_name}:{self.port}"

    def server_line(self) -> str:
        words = [f"server {self.written}", f"weight={self.weight}",
                 f"max_fails={self.max_fails}", f"fail_timeout={self.fail_timeout}s"]
        if self.max_conns:
            words.append(f"max_conns={self.max_conns}")
        if self.backup:
            words.append("backup")
        if self.down:
            words.append("down")
        return " ".join(words) + ";"

    def model(self) -> UpstreamServer:
        return UpstreamServer(name=self.written, host="127.0.0.1", port=self.port,
                              weight=self.weight, max_fails=self.max_fails,
                              fail_timeout=float(self.fail_timeout),
                              max_conns=self.max_conns, backup=self.backup,
                              down=self.down)


@dataclass
class Pool:
    """An ``upstream`` block: its method line (e.g. "hash $http_x_key consistent") and backends."""

    name: str
    method_line: str
    backends: list[Backend]
    balance: Balance = field(default_factory=Balance)
    port: int = field(default_factory=free_port)

    def block(self) -> str:
        lines = [f"upstream {self.name} {{"]
        if self.method_line:
            lines.append(f"    {self.method_line};")
        lines += [f"    {backend.server_line()}" for backend in self.backends]
        lines.append("}")
        return "\n".join(lines)

    def model(self) -> Upstream:
        return Upstream(name=self.name, servers=[b.model() for b in self.backends],
                        balance=self.balance)

    def names_by_address(self) -> dict[str, str]:
        return {backend.written: backend.name for backend in self.backends}


class Nginx:
    """nginx in the foreground with one worker, stopped by pid."""

    def __init__(self, prefix: str, pools: list[Pool]):
        self.prefix = prefix
        self.pools = {pool.name: pool for pool in pools}
        self.process = None
        backends = {b.name: b for pool in pools for b in pool.backends
                    if not (b.dead or b.external)}
        servers = [f'    server {{ listen {b.address}; return 200 "{b.name}"; }}'
                   for b in backends.values()]
        proxies = [f"    server {{ listen 127.0.0.1:{pool.port}; "
                   f"location / {{ proxy_pass http://{pool.name}; }} }}" for pool in pools]
        blocks = "\n".join(pool.block() for pool in pools)
        temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
{temp}
{blocks}
{chr(10).join(servers)}
{chr(10).join(proxies)}
}}
"""

    def start(self) -> None:
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as handle:
            handle.write(self.conf)
        self.process = subprocess.Popen(
            [NGINX, "-p", self.prefix, "-c", path, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for pool in self.pools.values():
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", pool.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGQUIT is nginx's graceful shutdown; it reaps its own worker.
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def error_log(self) -> str:
        """The tail of nginx's error log, for assertion messages."""
        try:
            with open(os.path.join(self.prefix, "error.log")) as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""

    def client(self, pool: str, source: str | None = None) -> http.client.HTTPConnection:
        """A keep-alive client connection to the proxy in front of ``pool``."""
        port = self.pools[pool].port
        address = (source, 0) if source else None
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=address)


def ask(conn: http.client.HTTPConnection, path: str = "/", headers: dict | None = None) -> str:
    """GET ``path`` and return the answering backend's name (or "<status>" on an error)."""
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read().decode()
    return body if response.status == 200 else f"<{response.status}>"


def assert_same(theirs: list[str], ours: list[str], nginx: Nginx) -> None:
    """Equal sequences, or a message naming the first difference and nginx's error log."""
    if ours != theirs:
        first = next(i for i, (a, b) in enumerate(zip(theirs + [None], ours + [None])) if a != b)
        raise AssertionError(f"request {first}: nginx chose {theirs[first:first + 5]}, "
                             f"we chose {ours[first:first + 5]}\nerror.log:\n{nginx.error_log()}")


def simulate(balancer, key, dead: set[str], names: dict[str, str]) -> str:
    """One request through our balancer, failing on dead backends as nginx would."""
    for peer in balancer.select(key):
        name = names[peer.name]
        if name in dead:
            balancer.release(peer, True)
            continue
        balancer.release(peer, False)
        return name
    return "<502>"
