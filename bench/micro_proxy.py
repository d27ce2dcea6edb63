"""In-process cost of the per-request proxy path, without sockets: Python twins vs compiled.

Feeds a keep-alive GET and the upstream's small answer through ClientConnection over
fake transports (writes are dropped), N times, and prints CPU microseconds per request
for each implementation. The kernel's share (two writes, two reads per request) is not
in these figures: they isolate what the code itself costs.

    .venv/bin/python -m bench.micro_proxy [--requests 200000] [--rewrite]

``--rewrite`` puts the rewrite scenario's map, if and two rewrites before proxy_pass
(bench/configs.py ``proxy(rewrite=True)``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import tempfile
import time

from gateway.config import load_config
from gateway.http.server import WorkerApp

CONFIG = """
events { worker_connections 64; }
http {
    access_log off;
MAP    upstream b { server 127.0.0.1:9; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:8080;
        keepalive_requests 100000000;
        location / {
SCRIPT            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""

# The rewrite scenario's additions (bench/configs.py proxy(rewrite=True)).
REWRITE_MAP = "    map $uri $route_tag { default app; ~^/static/ static; }\n"
REWRITE_SCRIPT = """\
            if ($request_method = POST) { return 405; }
            rewrite ^/legacy/(.*)$ /$1 permanent;
            rewrite ^/(small)$ /$1 break;
            proxy_set_header X-Route $route_tag;
"""

REQUEST = (b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           b"User-Agent: micro\r\nAccept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
            b"hello, world\n")

IMPLEMENTATIONS = {"python": "gateway.http.connection", "cython": "_fastpath.proxyproto"}


class NullTransport:
    """Takes writes and drops them; enough of a transport for both twins."""

    def __init__(self):
        self.writes = 0

    def write(self, data):
        self.writes += 1

    def close(self):
        pass

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)


class Loop:
    """The clock and create_connection, as the proxy uses them."""

    def __init__(self):
        self.time = time.monotonic
        self.upstream = None

    async def create_connection(self, factory, host, port):
        protocol = factory()
        transport = NullTransport()
        protocol.connection_made(transport)
        self.upstream = protocol
        return transport, protocol


async def measure(module_name: str, requests: int, workdir: str) -> float:
    conn_class = importlib.import_module(module_name).ClientConnection
    loop = Loop()
    app = WorkerApp(load_config(os.path.join(workdir, "micro.conf"), workdir), loop)
    client = conn_class(app, next(iter(app.listen_keys)))
    transport = NullTransport()
    client.connection_made(transport)
    client.data_received(REQUEST)          # the first request opens the upstream connection
    for _ in range(5):
        await asyncio.sleep(0)
    upstream = loop.upstream
    upstream.data_received(RESPONSE)
    feed_client, feed_upstream = client.data_received, upstream.data_received
    start = time.process_time()
    for _ in range(requests):
        feed_client(REQUEST)
        feed_upstream(RESPONSE)
    elapsed = time.process_time() - start
    if transport.writes != requests + 1:
        raise SystemExit(f"{module_name}: {transport.writes} responses for {requests + 1} requests")
    return elapsed / requests * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rewrite", action="store_true", help="the rewrite scenario's script")
    parser.add_argument("--only", choices=sorted(IMPLEMENTATIONS), help="one implementation")
    args = parser.parse_args(argv)
    config = CONFIG.replace("MAP", REWRITE_MAP if args.rewrite else "")
    config = config.replace("SCRIPT", REWRITE_SCRIPT if args.rewrite else "")
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "micro.conf"), "w") as f:
            f.write(config)
        for name, module in IMPLEMENTATIONS.items():
            if args.only and name != args.only:
                continue
            cost = asyncio.run(measure(module, args.requests, workdir))
            print(f"{name:7s} {cost:6.2f} us CPU/request ({module})")


if __name__ == "__main__":
    main()
