"""A real WebSocket server (the `websockets` library), the upstream of the ``ws-echo`` scenario and
of the tunnel tests, run as its own process: ``python -m bench.ws_backend --port N``.

Paths: ``/echo`` sends every message back; ``/sink`` reads messages and never answers;
``/bye`` closes with code 4000 after the first message; ``/stall`` never reads (its socket fills
up, which is what back-pressure tests need). Messages above ``--max-size`` bytes are refused
with close code 1009, as the library does.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop

from websockets.asyncio.server import serve


async def handler(ws):
    path = ws.request.path
    if path == "/echo":
        async for message in ws:
            await ws.send(message)
    elif path == "/sink":
        async for _message in ws:
            pass
    elif path == "/bye":
        await ws.recv()
        await ws.close(4000, "bye")
    elif path == "/stall":
        ws.transport.pause_reading()
        await ws.wait_closed()
    else:
        await ws.close(4004, "no such path")


async def main(port: int, max_size: int):
    async with serve(handler, "127.0.0.1", port, max_size=max_size, max_queue=1,
                     ping_interval=None, compression=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, default=1 << 20)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(main(args.port, args.max_size))
    except KeyboardInterrupt:
        pass
