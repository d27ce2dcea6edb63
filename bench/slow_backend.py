"""A small Python backend: a fixed answer after a delay (``upstream-10ms``), the URI echoed
(``uk-echo``) or a key looked up (``uk-kv``)."""

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


def value_response(value: bytes | None) -> bytes:
    """A kv GET answer: 200 with the value, or 404 when the key is absent."""
    if value is None:
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(value)) + value


class DelayedResponder(asyncio.Protocol):
    """Answers each request head (bodies are not expected) after ``delay`` seconds, in order."""

    def __init__(self, delay: float, echo: bool, items: dict[bytes, bytes]) -> None:
        self.delay = delay
        self.echo = echo
        self.items = items
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
            if self.echo or self.items:
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                target = parts[1] if len(parts) == 3 else b""
                if self.echo:
                    response = echo_response(target)
                else:
                    response = value_response(self.items.get(target))
            if self.delay:
                # Same delay for every request, so timers fire in arrival order: responses stay in order.
                loop.call_later(self.delay, self.respond, response)
            else:
                self.respond(response)

    def respond(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)


async def serve(port: int, delay: float, echo: bool, items: dict[bytes, bytes]) -> None:
    """Listen on 127.0.0.1:port forever."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: DelayedResponder(delay, echo, items),
                                      "127.0.0.1", port,
                                      backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command line: --port P [--delay SECONDS] [--echo-uri | --item /KEY=VALUE ...]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--echo-uri", action="store_true", help="answer with the request target")
    parser.add_argument("--item", action="append", default=[], metavar="/KEY=VALUE",
                        help="answer GET /KEY with VALUE, like a kv cache (repeatable)")
    args = parser.parse_args()
    items = dict(item.encode().split(b"=", 1) for item in args.item)
    uvloop.run(serve(args.port, args.delay, args.echo_uri, items))


if __name__ == "__main__":
    main()
