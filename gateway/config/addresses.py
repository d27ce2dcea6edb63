"""Host and port texts as nginx reads them in listen, server and proxy_pass."""

from __future__ import annotations

import socket


def resolve(host: str, port: int) -> list[str]:
    """All addresses of ``host``, IPv4 first; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    return list(dict.fromkeys(v4 + v6))


def split_host_port(text: str) -> tuple[str | None, str | None]:
    """``"[::1]:80"`` -> ("::1", "80"); ``"host"`` -> ("host", None); bad brackets -> None host."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, None
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            return None, None
        return host, rest[1:] if rest else None
    if ":" in text:
        host, port = text.rsplit(":", 1)
        return host, port
    return text, None


def valid_port(port: str) -> int | None:
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


def show(key: tuple[str, int]) -> str:
    host, port = key
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
