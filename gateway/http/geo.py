"""Per-request evaluation of ``geo`` variables (ngx_http_geo_module semantics).

The address is the client's, or the value of the block's address variable; with ``proxy``
networks, X-Forwarded-For is believed from them. An address that does not parse is looked up
as 255.255.255.255 (nginx's INADDR_NONE), and so is an IPv6 one in ``ranges`` mode; an
IPv4-mapped IPv6 address is looked up as its IPv4 address.
"""

from __future__ import annotations

import bisect

from gateway.config.geo import INADDR_NONE, V4, V6, parse_addr, parse_addr_port
from gateway.config.model import GeoBlock
from gateway.http.variables import variable_getter

_MAPPED = 0xFFFF            # the bits above the IPv4 part of ::ffff:a.b.c.d


def _as_v4(addr: tuple[int, int] | None) -> tuple[int, int]:
    """(family, key) to look up: INADDR_NONE for no address, IPv4 for an IPv4-mapped one."""
    if addr is None:
        return V4, INADDR_NONE
    family, value = addr
    if family != V4 and value >> 32 == _MAPPED:
        return V4, value & 0xFFFFFFFF
    return addr


def _trusted(addr: tuple[int, int], proxies) -> bool:
    """ngx_cidr_match: the address is in one of the ``proxy`` networks."""
    family, value = _as_v4(addr)
    width = 32 if family == V4 else 128
    for net_family, net, length in proxies:
        if net_family == family and value >> (width - length) == net >> (width - length):
            return True
    return False


def forwarded_addr(addr: tuple[int, int], xff: str, proxies, recursive: bool) -> tuple[int, int]:
    """ngx_http_get_forwarded_addr: from a trusted address, the last X-Forwarded-For address
    (with ``proxy_recursive``, the last one that is not itself trusted), else ``addr``."""
    end = len(xff)               # the part of the header not read yet
    while end > 0 and _trusted(addr, proxies):
        last = end - 1
        while last > 0 and xff[last] in " ,":
            last -= 1
        start = last
        while start > 0 and xff[start] not in " ,":
            start -= 1
        if start > 0:            # at a separator; nginx takes the first character as it is
            start += 1
        found = parse_addr_port(xff[start:last + 1])
        if found is None:
            break
        addr = found
        end = start - 1
        if not recursive or start == 0:
            break
    return addr


class GeoVariable:
    """Evaluates one ``geo``: the longest network holding the address, or its range."""

    __slots__ = ("source", "networks", "starts", "spans", "default", "proxies", "recursive",
                 "lookup")
    volatile = False
    always_found = True

    def __init__(self, block: GeoBlock):
        self.source = variable_getter(block.source) if block.source is not None else None
        # Longest prefixes first: (shift, table) per family.
        self.networks = {
            family: [(width - length, tables[length]) for length in sorted(tables, reverse=True)]
            for family, width, tables in ((V4, 32, block.networks4), (V6, 128, block.networks6))}
        self.spans = block.spans
        self.starts = [first for first, _last, _value in block.spans]
        self.default = block.default
        self.proxies = tuple(block.proxies)
        self.recursive = block.proxy_recursive
        self.lookup = self._range if block.ranges else self._network

    def __call__(self, request) -> str:
        if self.source is None:
            addr = parse_addr(request.remote_addr or "")
        else:
            addr = parse_addr(self.source(request))
        if addr is not None and self.proxies:
            xff = request.header("x-forwarded-for")
            if xff is not None:
                addr = forwarded_addr(addr, xff, self.proxies, self.recursive)
        return self.lookup(_as_v4(addr))

    def _network(self, addr: tuple[int, int]) -> str:
        family, key = addr
        for shift, table in self.networks[family]:
            value = table.get(key >> shift)
            if value is not None:
                return value
        return ""

    def _range(self, addr: tuple[int, int]) -> str:
        family, key = addr
        if family != V4:
            key = INADDR_NONE
        i = bisect.bisect_right(self.starts, key) - 1
        if i >= 0 and key <= self.spans[i][1]:
            return self.spans[i][2]
        return self.default
