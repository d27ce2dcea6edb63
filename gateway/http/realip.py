"""nginx's realip module: the client address taken from a header sent by a trusted proxy.

Applied once per request: with the server's settings when the request head is in (nginx's post-read
phase), else with the location's once it is chosen (its preaccess phase). Only a connection from a
`set_real_ip_from` address is believed. For X-Forwarded-For, without `real_ip_recursive` the last
address counts; with it, the addresses are walked from the right past the trusted ones, and the first
untrusted one counts (the leftmost when all are trusted), as ngx_http_get_forwarded_addr does.
The replaced address has no port, so $remote_port becomes empty; $realip_remote_addr and
$realip_remote_port keep the connection's own. With `real_ip_header proxy_protocol` the address
and port come from the connection's PROXY header (gateway/http/proxy_protocol.py), when it had one.
"""

from __future__ import annotations

import ipaddress

from gateway.http.proxy_protocol import inet6_ntop


class RealIp:
    """One level's set_real_ip_from / real_ip_header / real_ip_recursive, compiled."""

    __slots__ = ("networks", "header", "forwarded", "recursive", "proxy_protocol")

    def __init__(self, sources, header, recursive):
        self.networks = tuple(ipaddress.ip_network(s, strict=False) for s in sources)
        self.header = header.lower()
        self.forwarded = self.header == "x-forwarded-for"
        self.proxy_protocol = header == "proxy_protocol"
        self.recursive = recursive

    def trusted(self, text) -> bool:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)

    def apply(self, request) -> None:
        """Replace request.remote_addr when the connection is trusted and the header says so."""
        if getattr(request, "realip_addr", None) is not None or not self.trusted(request.remote_addr):
            return
        port = 0
        if self.proxy_protocol:
            addresses = getattr(request, "proxy_protocol", None)
            if addresses is None:
                return
            value, port = addresses.addr, addresses.port
        else:
            value = request.header(self.header)
        if not value:
            return
        if self.forwarded:
            found = self._forwarded(value)
        else:
            found = _address(value.strip())
        if found is None:
            return
        request.realip_addr = request.remote_addr
        request.realip_port = request.remote_port
        request.remote_addr = found
        request.remote_port = port

    def _forwarded(self, value):
        items = [item.strip() for item in value.split(",")]
        if not self.recursive:
            return _address(items[-1])
        for item in reversed(items):
            address = _address(item)
            if address is None:
                return None
            if not self.trusted(address):
                return address
        return _address(items[0])


def _address(text):
    """An IP address as nginx prints it ("::ffff:10.0.0.1", not Python's "::ffff:a00:1"), or None."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else inet6_ntop(addr.packed)
