"""The PROXY protocol parser (gateway/http/proxy_protocol.py): v1 and v2 headers, the broken ones
nginx refuses, and headers split over several reads."""

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, strategies as st

from gateway.errors import BrokenProxyHeader
from gateway.http.proxy_protocol import SIGNATURE, ProxyAddresses, inet6_ntop, parse

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command=1, family=1, transport=1, addresses=b"", tlvs=b"", version=2):
    body = addresses + tlvs
    return SIGNATURE + bytes([version << 4 | command, family << 4 | transport]) + \
        struct.pack("!H", len(body)) + body


def inet(src, dst, sport, dport):
    kind = socket.AF_INET if "." in src and ":" not in src else socket.AF_INET6
    return socket.inet_pton(kind, src) + socket.inet_pton(kind, dst) + struct.pack("!HH", sport, dport)


@pytest.mark.parametrize("header, expected", [
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
     ProxyAddresses("192.0.2.1", 56324, "198.51.100.2", 443)),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 1 0\r\n",
     ProxyAddresses("2001:db8::1", 1, "2001:db8::2", 0)),
    # nginx 1.22 takes v1 addresses as text of hex digits, ':' and '.', and ports with leading zeros.
    (b"PROXY TCP4 abc 198.51.100.2 056324 0443\r\n", ProxyAddresses("abc", 56324, "198.51.100.2", 443)),
    (b"PROXY TCP4  198.51.100.2 1 2\r\n", ProxyAddresses("", 1, "198.51.100.2", 2)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    (v2(addresses=inet("192.0.2.9", "198.51.100.3", 4000, 8443)),
     ProxyAddresses("192.0.2.9", 4000, "198.51.100.3", 8443)),
    (v2(addresses=inet("192.0.2.9", "198.51.100.3", 4000, 8443), tlvs=b"\x04\x00\x04abcd"),
     ProxyAddresses("192.0.2.9", 4000, "198.51.100.3", 8443)),
    (v2(family=2, addresses=inet("::ffff:1.2.3.4", "2001:db8::2", 1, 2)),
     ProxyAddresses("::ffff:1.2.3.4", 1, "2001:db8::2", 2)),
    (v2(command=0), None),                                     # LOCAL: a health check
    (v2(transport=2, addresses=inet("192.0.2.9", "198.51.100.3", 1, 2)), None),    # UDP
    (v2(family=3, addresses=b"\0" * 216), None),               # AF_UNIX
])
def test_headers_nginx_accepts(header, expected):
    assert parse(header + REQUEST) == (expected, len(header))


@pytest.mark.parametrize("data, message", [
    (b"", 'broken header: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"'),
    (b"PROXY TCP5 192.0.2.1 198.51.100.2 1 443\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1/8 198.51.100.2 1 2\r\n", "broken header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX\r\n", "broken header"),
    (b"PROXY TCP4 " + b"1" * 120 + b" 1.1.1.1 1 2\r\n", "broken header"),   # over 107 bytes
    (b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "broken header"),
    (v2(version=1, addresses=inet("192.0.2.9", "198.51.100.3", 1, 2)),
     "unknown PROXY protocol version: 1"),
    (v2(addresses=b"\0" * 4096), "header is too large"),
    (v2(addresses=inet("192.0.2.9", "198.51.100.3", 1, 2)[:8]), ""),   # nginx logs nothing
])
def test_broken_headers_are_refused_with_nginx_message(data, message):
    with pytest.raises(BrokenProxyHeader) as caught:
        parse(data + REQUEST)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    v2(addresses=inet("192.0.2.9", "198.51.100.3", 4000, 8443), tlvs=b"\x04\x00\x04abcd"),
])
def test_a_header_split_over_reads_is_awaited(header):
    whole = parse(header)
    for cut in range(1, len(header)):
        assert parse(header[:cut]) is None, cut
    assert whole[1] == len(header)


@pytest.mark.parametrize("start", [b"G", b"PROXY X", b"PROXY TCP4 192.0.2.1\n", b"\r\n\r\nX"])
def test_a_start_that_cannot_become_a_header_is_refused_at_once(start):
    with pytest.raises(BrokenProxyHeader):
        parse(start)


@pytest.mark.parametrize("text, printed", [
    ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),       # Python's own str() says ::ffff:a00:1
    ("::1.2.3.4", "::1.2.3.4"),
    ("::1", "::1"),
    ("::", "::"),
    ("::0.0.2.3", "::0.0.2.3"),
    ("2001:db8::", "2001:db8::"),
    ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # the first of two equal runs
    ("1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"),          # single zero groups stay
])
def test_ipv6_printed_as_nginx_prints_it(text, printed):
    assert inet6_ntop(ipaddress.IPv6Address(text).packed) == printed


@given(st.binary(min_size=16, max_size=16))
def test_ipv6_printing_round_trips(raw):
    assert ipaddress.IPv6Address(inet6_ntop(raw)).packed == raw


@given(st.binary(max_size=200))
def test_parse_never_fails_other_than_refusing(data):
    try:
        found = parse(data)
    except BrokenProxyHeader:
        return
    if found is not None:
        assert 0 < found[1] <= len(data)
