"""The floor of any uvloop proxy: a TCP relay that forwards bytes without reading them.

Each client connection gets its own upstream connection (upstreams taken in turn) and
every chunk read on one side is written unchanged to the other: no parsing, no routing,
no headers. Its CPU per request is what uvloop's transports and Python callbacks cost
with nothing else to do, so no HTTP proxy built on them can go below it. Over keep-alive
it makes the same system calls per request as nginx and the gateway (a read and a write
on each side).

    python -m bench.relay_floor --port P --upstream 127.0.0.1:Q [--upstream ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import uvloop


class Upstream(asyncio.Protocol):
    """The upstream half: what the backend sends goes to the client as it is."""

    def __init__(self, client: Client):
        self.client = client
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.client.upstream_ready(self)

    def data_received(self, data):
        self.client.transport.write(data)

    def connection_lost(self, exc):
        self.client.transport.close()


class Client(asyncio.Protocol):
    """The client half: bytes go upstream once its connection is up (held until then)."""

    def __init__(self, targets):
        self.targets = targets
        self.transport = None
        self.upstream = None
        self.pending = []

    def connection_made(self, transport):
        self.transport = transport
        host, port = next(self.targets)
        loop = asyncio.get_running_loop()
        loop.create_task(loop.create_connection(lambda: Upstream(self), host, port))

    def upstream_ready(self, upstream: Upstream):
        self.upstream = upstream
        for data in self.pending:
            upstream.transport.write(data)
        self.pending = []

    def data_received(self, data):
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.transport.close()


async def serve(port: int, upstreams: list[tuple[str, int]]) -> None:
    targets = itertools.cycle(upstreams)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(targets), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True)
    args = parser.parse_args()
    upstreams = [(address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1]))
                 for address in args.upstream]
    uvloop.run(serve(args.port, upstreams))


if __name__ == "__main__":
    main()
