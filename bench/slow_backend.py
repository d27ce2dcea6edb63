"""A backend that answers every request after a fixed delay (the "upstream with 10 ms latency")."""

from __future__ import annotations

import argparse
import asyncio

import uvloop

BODY = b"hello, world\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(BODY)) + BODY


class DelayedResponder(asyncio.Protocol):
    """Answers each request head (bodies are not expected) after ``delay`` seconds, in order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.buffer = self.buffer[end + 4:]
            # Same delay for every request, so timers fire in arrival order: responses stay in order.
            loop.call_later(self.delay, self.respond)

    def respond(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)


async def serve(port: int, delay: float) -> None:
    """Listen on 127.0.0.1:port forever."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: DelayedResponder(delay), "127.0.0.1", port,
                                      backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command line: --port P --delay SECONDS."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.01)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
