"""An upstream that misbehaves on purpose, one fault per path, for the fault-injection tests.

Run: python fault_upstream.py --port N --log FILE
Each request's path picks what happens after its head is read (see FAULTS). The log file gets one
line per event the tests wait for ("endless-closed" when a never-ending response's reader left).
"""

import argparse
import asyncio
import socket
import struct

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"


def reset(writer):
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Faults:
    def __init__(self, log_path):
        self.log_path = log_path
        self.served_once = set()

    def log(self, line):
        with open(self.log_path, "a") as fh:
            fh.write(line + "\n")

    async def handle(self, reader, writer):
        conn_requests = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                conn_requests += 1
                path = head.split(b" ", 2)[1].decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                keep = await self.answer(path.split("?")[0], writer, conn_requests)
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def answer(self, path, writer, nth):
        """Act out the fault for path; True to keep the connection for another request."""
        w = writer.write
        if path == "/ok":
            w(OK)
        elif path == "/reset-before-head":
            reset(writer)
            return False
        elif path == "/reset-mid-head":
            w(b"HTTP/1.1 200 OK\r\nContent-Type: te")
            await writer.drain()
            await asyncio.sleep(0.05)
            reset(writer)
            return False
        elif path == "/close-mid-head":
            w(b"HTTP/1.1 200 OK\r\nContent-Type: te")
            return False
        elif path == "/reset-mid-body":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"b" * 10000)
            await writer.drain()
            await asyncio.sleep(0.05)
            reset(writer)
            return False
        elif path == "/reset-mid-chunk":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1000\r\n" + b"c" * 500)
            await writer.drain()
            await asyncio.sleep(0.05)
            reset(writer)
            return False
        elif path == "/bad-chunk-size":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            w(b"zz\r\nmore\r\n0\r\n\r\n")
        elif path == "/stall-before-head":
            await asyncio.sleep(30)
            return False
        elif path == "/stall-mid-body":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"s" * 10)
            await asyncio.sleep(30)
            return False
        elif path == "/endless":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                while True:
                    w(b"400\r\n" + b"e" * 0x400 + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.02)
            except ConnectionError:
                self.log("endless-closed")
                return False
        elif path == "/garbage":
            w(b"garbage, not HTTP\r\n\r\n")
            return False
        elif path == "/huge-header":
            w(b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 70000 + b"\r\nContent-Length: 3\r\n\r\nok\n")
        elif path == "/bad-length":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nok\n")
        elif path == "/two-lengths":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nok\n")
        elif path == "/length-and-chunked":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n")
        elif path == "/close-on-second":
            # The first request of a connection is answered and the connection kept; a second one
            # on it is read and the connection closed unanswered (an idle timeout racing the request).
            if nth >= 2:
                return False
            w(OK)
        elif path == "/twice":
            w(OK + OK)      # one request, two answers: the second is not the gateway's to relay
        elif path == "/close-delimited":
            # Not a fault: a body without Content-Length or chunked framing, ended by the close.
            w(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            for i in range(2000):
                w(b"%05d close-delimited text, line after line\n" % i)
                if i % 500 == 0:
                    await writer.drain()
            await writer.drain()
            return False
        else:
            w(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return True


async def main(port, log_path):
    faults = Faults(log_path)
    server = await asyncio.start_server(faults.handle, "127.0.0.1", port, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.log))
