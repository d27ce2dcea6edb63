"""The PROXY protocol ahead of HTTP on a ``listen ... proxy_protocol`` socket.

A load balancer in front (HAProxy's ``send-proxy``/``send-proxy-v2``, a cloud balancer) opens
each connection with one header naming the client it accepted: a text line (v1,
``PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\\r\\n``) or a binary block (v2, after a 12-byte
signature). It is parsed as nginx 1.22's ngx_proxy_protocol_read does: v1 addresses are taken
as text made of hex digits, ':' and '.', ports as decimal up to 65535; ``PROXY UNKNOWN``, a v2
LOCAL command and v2 families other than TCP over IPv4/IPv6 are accepted with no addresses;
v2 TLVs are skipped. Anything else, a plain HTTP request included, closes the connection without
an answer, logging nginx's ``broken header: "..."``.

One difference, on purpose: nginx parses only its first read, so a header split over two TCP
segments closes the connection; here the rest is awaited (the specification's rule), up to the
header's largest size and within client_header_timeout.
"""

from __future__ import annotations

import asyncio

from gateway.errors import BrokenProxyHeader
from gateway.observe.errorlog import log

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16            # signature, version and command, family and transport, length
V1_MAX = 107             # the longest v1 line the specification allows, CRLF included
V2_MAX = 4096            # nginx's NGX_PROXY_PROTOCOL_MAX_HEADER: a longer v2 block is refused
_ADDRESS_BYTES = frozenset(b"0123456789abcdefABCDEF:.")
_PREFIX = b"PROXY "


class ProxyAddresses:
    """What a PROXY header said: $proxy_protocol_addr, _port, _server_addr, _server_port."""

    __slots__ = ("addr", "port", "server_addr", "server_port")

    def __init__(self, addr: str, port: int, server_addr: str, server_port: int):
        self.addr = addr
        self.port = port
        self.server_addr = server_addr
        self.server_port = server_port

    def __eq__(self, other):
        return isinstance(other, ProxyAddresses) and \
            (self.addr, self.port, self.server_addr, self.server_port) == \
            (other.addr, other.port, other.server_addr, other.server_port)

    def __repr__(self):
        return (f"ProxyAddresses({self.addr!r}, {self.port}, {self.server_addr!r}, "
                f"{self.server_port})")


def parse(data: bytes):
    """``(addresses or None, bytes used)`` for a complete header at the start of ``data``,
    ``None`` while more bytes may complete it; BrokenProxyHeader (with nginx's log text) if it
    cannot be one."""
    if data[:len(SIGNATURE)] == SIGNATURE[:len(data)]:
        if len(data) < V2_FIXED:
            return None
        return _parse_v2(data)
    if data[:len(_PREFIX)] != _PREFIX[:len(data)]:
        raise BrokenProxyHeader(_broken(data))
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data or _v1_invalid_so_far(data):
            raise BrokenProxyHeader(_broken(data))
        return None
    return _parse_v1(data, end)


def _parse_v1(data: bytes, end: int):
    line = data[len(_PREFIX):end]
    used = end + 2
    if line.startswith(b"UNKNOWN"):
        return None, used                  # nginx skips to the CRLF: no addresses
    if len(line) < 5 or line[:3] != b"TCP" or line[3:4] not in (b"4", b"6") or line[4:5] != b" ":
        raise BrokenProxyHeader(_broken(data))
    fields = line[5:].split(b" ")
    # nginx reads two addresses ended by a space, a port ended by a space, a port ended by CR.
    if len(fields) < 4:
        raise BrokenProxyHeader(_broken(data))
    src, dst, src_port = fields[0], fields[1], fields[2]
    dst_port = b" ".join(fields[3:])
    for addr in (src, dst):
        if not _ADDRESS_BYTES.issuperset(addr):
            raise BrokenProxyHeader(_broken(data))
    ports = [_port(src_port), _port(dst_port)]
    if None in ports:
        raise BrokenProxyHeader(_broken(data))
    return ProxyAddresses(src.decode("ascii"), ports[0], dst.decode("ascii"), ports[1]), used


def _v1_invalid_so_far(data: bytes) -> bool:
    """Whether an unfinished v1 line is already past saving (nginx would refuse it whole)."""
    rest = data[len(_PREFIX):]
    for start in (b"UNKNOWN", b"TCP4 ", b"TCP6 "):
        if rest[:len(start)] == start[:len(rest)]:
            return False
    return True


def _port(text: bytes):
    """ngx_atoi: decimal digits only, at least one; None unless 0..65535."""
    if not text or not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= 65535 else None


def _parse_v2(data: bytes):
    version = data[12] >> 4
    if version != 2:
        raise BrokenProxyHeader(f"unknown PROXY protocol version: {version}")
    length = int.from_bytes(data[14:16], "big")
    end = V2_FIXED + length
    if end > V2_MAX:
        raise BrokenProxyHeader("header is too large")
    if len(data) < end:
        return None        # nginx: "header is too large" unless it came in one read
    command, family, transport = data[12] & 0x0F, data[13] >> 4, data[13] & 0x0F
    if command != 1 or transport != 1 or family not in (1, 2):
        return None, end   # LOCAL, UDP, AF_UNIX, AF_UNSPEC: accepted, no addresses
    body = data[V2_FIXED:end]
    size = 4 if family == 1 else 16
    if len(body) < 2 * size + 4:
        raise BrokenProxyHeader("")        # nginx closes without a log line here
    ntop = _ntop4 if family == 1 else inet6_ntop
    ports = body[2 * size:2 * size + 4]
    return ProxyAddresses(ntop(body[:size]), int.from_bytes(ports[:2], "big"),
                          ntop(body[size:2 * size]), int.from_bytes(ports[2:], "big")), end


def _ntop4(raw: bytes) -> str:
    return "%d.%d.%d.%d" % tuple(raw)


def inet6_ntop(raw: bytes) -> str:
    """An IPv6 address as nginx prints it (ngx_inet6_ntop): the longest run of two or more
    zero groups as "::", and a trailing dotted quad for IPv4-mapped and -compatible forms."""
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 16, 2)]
    zero, longest, run, start = -1, 1, 0, -1
    for i, word in enumerate(words):
        if word:
            if longest < run:
                zero, longest = start, run
            run = 0
            continue
        if run == 0:
            start = i
        run += 1
    if longest < run:
        zero, longest = start, run
    groups = 8
    out = ""
    if zero == 0:
        if (longest == 5 and words[5] == 0xFFFF) or longest == 6 or \
                (longest == 7 and raw[14] != 0 and raw[15] != 1):
            groups = 6
        out = ":"
    i = 0
    while i < groups:
        if i == zero:
            out += ":"
            i += longest
            continue
        out += "%x" % words[i]
        if i < 7:
            out += ":"
        i += 1
    if groups == 6:
        out += "%d.%d.%d.%d" % tuple(raw[12:])
    return out


def _broken(data: bytes) -> str:
    return 'broken header: "%s"' % data.decode("latin-1")


class ProxyProtocolReader(asyncio.Protocol):
    """A connection on a proxy_protocol socket until its header is in; then ``make_connection()``
    (an HTTP ClientConnection) takes the transport over, with the header's addresses and the
    bytes that followed the header."""

    __slots__ = ("app", "listen_key", "make_connection", "transport", "buffer", "timer")

    def __init__(self, app, listen_key, make_connection):
        self.app = app
        self.listen_key = listen_key
        self.make_connection = make_connection
        self.transport = None
        self.buffer = b""
        self.timer = None

    def connection_made(self, transport):
        self.transport = transport
        # nginx reads the header under the default server's client_header_timeout.
        timeout = self.app.default_server(self.listen_key).client_header_timeout
        self.timer = self.app.loop.call_later(timeout, self._timed_out)

    def data_received(self, data):
        self.buffer += data
        try:
            found = parse(self.buffer)
        except BrokenProxyHeader as exc:
            if str(exc):
                self._log("error", str(exc))
            self._close()
            return
        if found is None:
            return
        addresses, used = found
        rest = self.buffer[used:]
        self.buffer = b""
        self.timer.cancel()
        conn = self.make_connection()
        conn.proxy_protocol = addresses
        transport = self.transport
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if rest and not transport.is_closing():
            conn.data_received(rest)

    def eof_received(self):
        self._close()

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()

    def _timed_out(self):
        self._log("info", "client timed out (110: Connection timed out)")
        self._close()

    def _close(self):
        self.timer.cancel()
        self.transport.close()

    def _log(self, level, text):
        if log.enabled(level):
            peer = self.transport.get_extra_info("peername") or ("",)
            host, port = self.listen_key
            server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            getattr(log, level)(f"{text} while reading PROXY protocol, client: {peer[0]}, "
                                f"server: {server}")
