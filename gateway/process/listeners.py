"""Listening sockets: opened once by the master, kept across reloads, shared by forked workers."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from gateway.config.model import Config
from gateway.errors import GatewayError
from gateway.observe.errorlog import log

Key = tuple[str, int]


@dataclass
class ListenOptions:
    """The socket-level options of one listen address, merged over every server using it."""

    host: str
    port: int
    reuseport: bool = False
    backlog: int = 511
    ipv6only: bool = True


def display(key: Key) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``, as nginx names listen addresses."""
    host, port = key
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_options(config: Config) -> dict[Key, ListenOptions]:
    """Every distinct listen address in the config with its merged socket options."""
    options: dict[Key, ListenOptions] = {}
    servers = config.http.servers if config.http is not None else []
    for server in servers:
        for listen in server.listens:
            merged = options.setdefault(listen.key, ListenOptions(
                listen.host, listen.port, ipv6only=listen.ipv6only))
            merged.reuseport = merged.reuseport or listen.reuseport
            if listen.backlog != ListenOptions.backlog:
                merged.backlog = listen.backlog
    return options


def open_socket(options: ListenOptions) -> socket.socket:
    """Create, bind and listen one socket; raises GatewayError in nginx's wording."""
    where = display((options.host, options.port))
    try:
        infos = socket.getaddrinfo(options.host, options.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise GatewayError(f'host not found in "{where}" of the "listen" directive') from exc
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if options.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(options.ipv6only))
        sock.bind(address)
        sock.listen(options.backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        call = "bind" if exc.errno in (98, 99, 13) else "listen"
        raise GatewayError(f"{call}() to {where} failed ({exc.errno}: {exc.strerror})") from exc
    return sock


class Listeners:
    """The master's sockets per listen address: one shared, or one per worker with reuseport."""

    def __init__(self):
        self._sockets: dict[Key, list[socket.socket]] = {}
        self._options: dict[Key, ListenOptions] = {}

    def update(self, config: Config, workers: int) -> None:
        """Make the open sockets match ``config``; on GatewayError nothing has changed."""
        wanted = listen_options(config)
        opened: dict[Key, list[socket.socket]] = {}
        try:
            for key, options in wanted.items():
                current = self._options.get(key)
                if current is not None and current.reuseport != options.reuseport:
                    # A bound socket cannot switch modes without a window where the
                    # address is unbound (or doubly bound), so keep the old mode.
                    log.warn(f'"reuseport" change for {display(key)} needs a restart, ignored')
                    options.reuseport = current.reuseport
                have = self._sockets.get(key, [])
                need = workers if options.reuseport else 1
                opened[key] = [open_socket(options) for _ in range(need - len(have))]
        except GatewayError:
            for socks in opened.values():
                for sock in socks:
                    sock.close()
            raise
        for key in list(self._sockets):
            if key not in wanted:
                for sock in self._sockets.pop(key):
                    sock.close()
                del self._options[key]
        for key, options in wanted.items():
            socks = self._sockets.get(key, []) + opened[key]
            need = workers if options.reuseport else 1
            for sock in socks[need:]:
                sock.close()
            self._sockets[key] = socks[:need]
            if key in self._options and self._options[key].backlog != options.backlog:
                for sock in self._sockets[key]:
                    sock.listen(options.backlog)   # Linux lets listen() change the backlog
            self._options[key] = options

    def for_worker(self, index: int) -> dict[Key, list[socket.socket]]:
        """The sockets worker number ``index`` accepts on."""
        result = {}
        for key, socks in self._sockets.items():
            if self._options[key].reuseport:
                result[key] = [socks[index % len(socks)]]
            else:
                result[key] = list(socks)
        return result

    def all(self) -> list[socket.socket]:
        """Every socket held, for closing the ones a worker does not use."""
        return [sock for socks in self._sockets.values() for sock in socks]

    def close(self) -> None:
        """Close every socket (the master at exit)."""
        for sock in self.all():
            sock.close()
        self._sockets.clear()
        self._options.clear()
