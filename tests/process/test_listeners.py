"""Listening sockets: bound once, kept across updates, one per worker with reuseport."""

from __future__ import annotations

import socket

import pytest

from gateway.config.model import Config, Http, Listen, LocationSettings, Server
from gateway.errors import GatewayError
from gateway.process.listeners import Listeners, display, listen_options
from tests.process.harness import free_port


def config_with(*listens: Listen) -> Config:
    server = Server(listens=list(listens), server_names=[""], locations=[],
                    settings=LocationSettings())
    return Config(file="test.conf", prefix="/", http=Http(servers=[server]))


@pytest.fixture
def listeners():
    opened = Listeners()
    try:
        yield opened
    finally:
        opened.close()


def test_shared_socket_is_kept_across_updates(listeners):
    port = free_port()
    config = config_with(Listen("127.0.0.1", port, backlog=64))
    listeners.update(config, workers=2)
    first = listeners.for_worker(0)[("127.0.0.1", port)]
    assert len(first) == 1 and first == listeners.for_worker(1)[("127.0.0.1", port)]
    assert first[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    listeners.update(config, workers=4)
    assert listeners.for_worker(3)[("127.0.0.1", port)][0] is first[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass      # it listens


def test_reuseport_opens_one_socket_per_worker(listeners):
    port = free_port()
    config = config_with(Listen("127.0.0.1", port, reuseport=True))
    listeners.update(config, workers=3)
    socks = [listeners.for_worker(i)[("127.0.0.1", port)][0] for i in range(3)]
    assert len({id(sock) for sock in socks}) == 3
    assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in socks)
    listeners.update(config, workers=2)
    assert [listeners.for_worker(i)[("127.0.0.1", port)][0] for i in range(2)] == socks[:2]
    assert socks[2].fileno() == -1


def test_removed_addresses_are_closed(listeners):
    first, second = free_port(), free_port()
    listeners.update(config_with(Listen("127.0.0.1", first), Listen("127.0.0.1", second)), 1)
    old = listeners.for_worker(0)[("127.0.0.1", first)][0]
    listeners.update(config_with(Listen("127.0.0.1", second)), 1)
    assert list(listeners.for_worker(0)) == [("127.0.0.1", second)]
    assert old.fileno() == -1


def test_ipv6_only(listeners):
    port = free_port()
    listeners.update(config_with(Listen("::1", port, ipv6only=True)), 1)
    sock = listeners.for_worker(0)[("::1", port)][0]
    assert sock.family == socket.AF_INET6
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert display(("::1", port)) == f"[::1]:{port}"


def test_a_failed_update_changes_nothing(listeners):
    port, busy_port = free_port(), free_port()
    listeners.update(config_with(Listen("127.0.0.1", port)), 1)
    before = listeners.all()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        busy.listen()
        with pytest.raises(GatewayError) as caught:
            listeners.update(config_with(Listen("127.0.0.1", port),
                                         Listen("127.0.0.1", busy_port)), 1)
    assert str(caught.value) == (f"bind() to 127.0.0.1:{busy_port} failed "
                                 "(98: Address already in use)")
    assert listeners.all() == before


def test_options_merge_over_servers():
    port = free_port()
    config = config_with(Listen("127.0.0.1", port), Listen("127.0.0.1", port, reuseport=True,
                                                           backlog=100))
    options = listen_options(config)[("127.0.0.1", port)]
    assert (options.reuseport, options.backlog) == (True, 100)
