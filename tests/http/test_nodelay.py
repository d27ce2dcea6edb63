"""TCP_NODELAY on both sides of the proxy comes from the event loop, not from our code.

ClientConnection and UpstreamConnection no longer set it themselves (one system call
per connection each); these tests fail if the loop we run on stops doing it.
"""

import asyncio
import socket

import pytest
import uvloop


class Recorder(asyncio.Protocol):
    def __init__(self, seen):
        self.seen = seen

    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        self.seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        transport.close()


async def nodelay_on_accepted_and_connected_sockets():
    loop = asyncio.get_running_loop()
    accepted, connected = [], []
    server = await loop.create_server(lambda: Recorder(accepted), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await loop.create_connection(lambda: Recorder(connected), "127.0.0.1", port)
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    return accepted, connected


@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
def test_the_event_loop_sets_tcp_nodelay(loop_name):
    if loop_name == "uvloop":
        accepted, connected = uvloop.run(nodelay_on_accepted_and_connected_sockets())
    else:
        accepted, connected = asyncio.run(nodelay_on_accepted_and_connected_sockets())
    assert accepted and accepted[0] != 0
    assert connected and connected[0] != 0
