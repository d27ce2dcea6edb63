"""A small Python backend: a fixed answer after a delay (``upstream-10ms``) or the URI echoed (``uk-echo``)."""

from __future__ import annotations

import argparse
import asyncio

import uvloop

BODY = b"hello, world\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(BODY)) + BODY


def echo_response(target: bytes) -> bytes:
    """A 200 response whose body is the request target."""
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(target)) + target


class DelayedResponder(asyncio.Protocol):
    """Answers each request head (bodies are not expected) after ``delay`` seconds, in order."""

    def __init__(self, delay: float, echo: bool) -> None:
        self.delay = delay
        self.echo = echo
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
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            response = RESPONSE
            if self.echo:
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                response = echo_response(parts[1] if len(parts) == 3 else b"")
            if self.delay:
                # Same delay for every request, so timers fire in arrival order: responses stay in order.
                loop.call_later(self.delay, self.respond, response)
            else:
                self.respond(response)

    def respond(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)


async def serve(port: int, delay: float, echo: bool) -> None:
    """Listen on 127.0.0.1:port forever."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: DelayedResponder(delay, echo), "127.0.0.1", port,
                                      backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command line: --port P [--delay SECONDS] [--echo-uri]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--echo-uri", action="store_true", help="answer with the request target")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.delay, args.echo_uri))


if __name__ == "__main__":
    main()
