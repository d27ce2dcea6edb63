"""The compiled parser's fast paths against the twin, on input aimed at their edges.

_fastpath/httpparse.pyx answers common input (plain origin-form targets, valid
head lines, ordinary header lists) without its general code; these tests
generate input around each fast path's conditions and require the same result,
or the same exception class and message, as gateway/http/parser_py.py.
"""

import itertools
import random

import pytest

from _fastpath import httpparse
from gateway.http import parser_py
from gateway.http.plan import HIDDEN_RESPONSE
from tests.http.test_response_scan import outcome, reference


def same(fn_name, *args):
    expected = outcome(getattr(parser_py, fn_name), *args)
    got = outcome(getattr(httpparse, fn_name), *args)
    assert got == expected, args
    return got


# split_target ---------------------------------------------------------------

def test_targets_every_short_combination():
    """Every target of up to six bytes over the characters the fast path looks at."""
    for size in range(7):
        for chars in itertools.product(b"/.?#a", repeat=size):
            same("split_target", b"/" + bytes(chars))


def test_targets_random():
    rng = random.Random(31)
    alphabet = b"/./.?#%2eFa~-_\x00\x01 \x7f\x80\xc3\xa9\xff"
    for _ in range(20000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        same("split_target", b"/" + data)
        same("split_target", data)


def test_targets_common_forms():
    for target in (b"/", b"/small", b"/static/app.js?v=3", b"/a/b/c.html", b"/.well-known/x",
                   b"/a..b/...", b"/a/..b/.c/", b"/a?", b"/?", b"/a?b?c", b"/a?b/../c",
                   b"/a?%zz", b"/a?b#c", b"/a#b", b"/caf\xc3\xa9", b"/a?caf\xc3\xa9",
                   b"/a\x00b", b"/a/.", b"/a/..", b"/a/./b", b"/a/../b", b"/a//b", b"/a/.?x",
                   b"/a/..?x", b"/a/.#x", b"/" + b"x" * 300, b"/" + b"ab/" * 100 + b"?q=1"):
        same("split_target", target)
        same("split_target", bytearray(target))


def test_plain_target_shares_one_str():
    uri, args, request_uri = httpparse.split_target(b"/small")
    assert (uri, args, request_uri) == ("/small", "", "/small")
    assert uri is request_uri


# scan_response_head ---------------------------------------------------------

def scan_same(buf, hidden_names, max_head=65536, head_request=False):
    expected = outcome(reference, buf, max_head, head_request, hidden_names)
    got = outcome(httpparse._scan_response_head, buf, max_head, head_request)
    assert got == expected, (buf, max_head, head_request, sorted(hidden_names))
    return got


@pytest.fixture
def hidden():
    """Set the scanner's hidden names for one test, then put back what was there."""
    previous = httpparse._set_hidden_response(HIDDEN_RESPONSE)

    def use(names):
        httpparse._set_hidden_response(names)
        return frozenset(names)

    yield use
    httpparse._set_hidden_response(previous)


# Names and values longer than the 16 bytes the scanner looks at in one go,
# names of every token character, and lines already in the relayed form.
LONG_HEAD = (
    b"HTTP/1.1 200 A reason phrase of some length\r\n"
    b"Server: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 15:00:00 GMT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234567\r\n"
    b"X-Custom-Header-With-A-Long-Name: value\twith tab \xc3\xa9\r\n"
    b"X!#$%&'*+-.^_`|~09azAZ: odd name\r\n"
    b"Connection:   Keep-Alive   \r\n"
    b"Cache-Control: no-cache\r\nVary: Accept-Encoding\r\n\r\nbody"
)
PROBES = b"\x00\x01\x08\t\n\x0b\r\x1f \"(),/:;<=>?@[\\]{}\x7f\x80\xff_^~-aZ0"


def test_scan_every_byte_everywhere(hidden):
    """Each probe byte put in, and put over, every position of a long head."""
    names = hidden(HIDDEN_RESPONSE)
    for at in range(len(LONG_HEAD)):
        for byte in PROBES:
            probe = bytes([byte])
            scan_same(LONG_HEAD[:at] + probe + LONG_HEAD[at:], names)
            scan_same(LONG_HEAD[:at] + probe + LONG_HEAD[at + 1:], names)


def test_scan_every_prefix_and_limit(hidden):
    names = hidden(HIDDEN_RESPONSE)
    for cut in range(len(LONG_HEAD) + 1):
        for max_head in (65536, cut, cut - 1, 40):
            scan_same(LONG_HEAD[:cut], names, max_head)


def test_scan_names_the_keys_must_tell_apart(hidden):
    """Hidden names with "^", "~", capitals or other bytes, and names alike but for one byte."""
    tables = [
        {b"x^y", b"a~b", b"X-Up", b"x(y", b"", b"transfer_encoding", b"x-accel-limit-rate",
         b"abc", b"ab", b"a", b"0123456789abcdefghij", b"keep-alive", b"x\xe9"},
        {b"x~y", b"a^b", b"x-accel-limit_rate", b"0123456789abcdefghiJ"},
        # Names that share a key: each must still be found.
        {b"x^y", b"x~y", b"a^b", b"a~b", b"0123456789abcdefghij", b"01234567-_abcdefghij",
         b"x-accel-limit-rate", b"x-accel_limit-rate"},
        HIDDEN_RESPONSE,
    ]
    field_names = [b"x^y", b"X~Y", b"x~y", b"A^B", b"a~b", b"X-Up", b"x-up", b"transfer_encoding",
                   b"Transfer-Encoding", b"Transfer_Encoding", b"TRANSFER-ENCODINg",
                   b"X-Accel-Limit-Rate", b"x-accel-limit_rate", b"x-accel-limit-ratE",
                   b"ABC", b"Ab", b"A", b"abd", b"0123456789ABCDEFGHIJ",
                   b"0123456789abcdefghiJ", b"0123456789abcdefGhij", b"0123456789abcdef_hij",
                   b"01234567-_ABCDEFGHIJ", b"01234567__abcdefghij", b"X-Accel_Limit-Rate",
                   b"Keep-Alive", b"keep_alive", b"Content-Length", b"Content_Length",
                   b"content-lengtH", b"Connection", b"Connectio_", b"Date", b"date", b"Dat_",
                   b"Server", b"`erver", b"@erver", b"Upgrade", b"Trailer", b"X-Pad"]
    for table in tables:
        names = hidden(table)
        for name in field_names:
            for value in (b"1", b"close", b"keep-alive", b"Keep-Alive", b"keep-alivE",
                          b"keep_alive", b"keep-alive, close", b"chunked"):
                scan_same(b"HTTP/1.1 200 OK\r\n" + name + b": " + value + b"\r\n\r\n", names)


def test_scan_connection_values(hidden):
    names = hidden(HIDDEN_RESPONSE)
    for value in (b"keep-alive", b"KEEP-ALIVE", b"keep-alive ", b"keep-alive,close",
                  b"keep\x80alive", b"keep-alivf", b"kEEp-aLIVe", b"close", b"xCLOSEx", b"clos",
                  b"c", b"", b"keep-alive\tclose", b"Close, keep-alive", b"keep-alive1"):
        scan_same(b"HTTP/1.1 200 OK\r\nConnection: " + value + b"\r\n\r\n", names)
        scan_same(b"HTTP/1.1 200 OK\nConnection:" + value + b"\nConnection: close\n\n", names)


def test_scan_random_lines(hidden):
    rng = random.Random(77)
    alphabet = b"aZ-_:;  \t\t\r\n\x00\x7f\x80~^,"
    for _ in range(4000):
        names = hidden(rng.choice([HIDDEN_RESPONSE, frozenset({b"a-b", b"x"})]))
        lines = []
        for _ in range(rng.randint(0, 4)):
            name = bytes(rng.choice(b"aZ-_x~^0") for _ in range(rng.randint(0, 20)))
            value = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
            lines.append(name + rng.choice([b": ", b":", b" : "]) + value)
        data = b"HTTP/1.1 200 OK\r\n" + b"".join(
            line + rng.choice([b"\r\n", b"\n"]) for line in lines) + b"\r\n"
        scan_same(data, names, rng.choice([65536, len(data), len(data) - 1]))


# request_body_framing -------------------------------------------------------

class Name(bytes):
    """A bytes subclass: the fast path leaves it to the general code."""


def test_framing_header_lists():
    rng = random.Random(5)
    names = [b"content-length", b"transfer-encoding", b"host", b"content-lengt",
             b"content-lengthx", b"transfer_encoding", b"x" * 14, b"y" * 17, b""]
    values = [b"0", b"13", b"007", b"", b" 1", b"1 ", b"-1", b"+1", b"1,1", b"x",
              b"9223372036854775807", b"9223372036854775808", b"9" * 19, b"9" * 18,
              b"chunked", b"gzip, chunked", b"CHUNKED", b", chunked", b"identity"]
    for _ in range(5000):
        headers = []
        for _ in range(rng.choice([0, 1, 1, 2, 3, 9])):
            lower = rng.choice(names)
            headers.append((lower, lower.title(), rng.choice(values)))
        for version in (10, 11):
            same("request_body_framing", headers, version)


def test_framing_unusual_items():
    cl = (b"content-length", b"Content-Length", b"5")
    # (A value not of bytes is left out: the compiled code has always refused one.)
    for headers in ([cl], [cl, cl], [(Name(b"content-length"), b"C", b"5")],
                    [[b"content-length", b"C", b"5"]], [(b"content-length", b"C", b"5", b"")],
                    [(b"host", b"Host", b"a"), (b"content-length", b"C", b"x")],
                    [(b"host", b"Host", b"a"), (b"transfer-encoding", b"T", b"chunked"), cl],
                    [], [(b"host", b"Host", b"a")] * 20):
        for version in (10, 11):
            same("request_body_framing", headers, version)


def test_framing_of_parsed_heads():
    for head in (b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
                 b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
                 b"POST /a HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 1\r\ncontent-length: 1\r\n\r\n",
                 b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"):
        _method, _target, version, headers, _consumed, _odd = parser_py.parse_request_head(
            head, 8192, 65536)
        assert httpparse.parse_request_head(head, 8192, 65536)[3] == headers
        same("request_body_framing", headers, version)


# parse_request_head ---------------------------------------------------------

def kind(fn, *args):
    """fn's result, or the class of what it raised (the two differ in some messages)."""
    try:
        return "returned", fn(*args)
    except Exception as exc:    # noqa: BLE001 - compared, not handled
        return "raised", type(exc)


def request_same(data, max_line=8192, max_head=65536):
    expected = kind(parser_py.parse_request_head, data, max_line, max_head)
    got = kind(httpparse.parse_request_head, data, max_line, max_head)
    assert got == expected, (data, max_line, max_head)


REQUEST = (
    b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nX-Odd_Name!: \tv\t \r\nUpgrade-Insecure-Requests: 1\r\n"
    b"Sec-CH-UA-Platform: \"Linux\"\r\nsec-ch-ua-platform: x\r\nSec-CH-UA-PlatforM: y\r\n\r\nBODY"
)


def test_request_every_byte_everywhere():
    for at in range(len(REQUEST)):
        for byte in PROBES:
            probe = bytes([byte])
            request_same(REQUEST[:at] + probe + REQUEST[at:])
            request_same(REQUEST[:at] + probe + REQUEST[at + 1:])


def test_request_every_prefix_and_limit():
    small = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    for data in (REQUEST, small, b"\r\n\n" + small, small.replace(b"\r\n", b"\n")):
        for cut in range(len(data) + 1):
            for max_line, max_head in ((8192, 65536), (20, 65536), (8192, cut), (8192, cut - 1),
                                       (30, 40)):
                request_same(data[:cut], max_line, max_head)


def test_request_lines():
    for line in (b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"GET / HTTP/2.0", b"GET / HTTP/0.9",
                 b"GET / HTTP/1.x", b"GET / HTTP/11", b"GET  /  HTTP/1.1", b"GET / HTTP/1.1 ",
                 b"OPTIONS * HTTP/1.1", b"GET * HTTP/1.1", b"G_T /a HTTP/1.1", b"GET /\xff HTTP/1.1",
                 b"GET\t/ HTTP/1.1", b"GET / HTTP/1.1\r", b" GET / HTTP/1.1", b"GET /", b"GET",
                 b"DELETE /x HTTP/1.1", b"PUT /x HTTP/1.1", b"HEAD /x HTTP/1.0"):
        for end in (b"\r\n", b"\n"):
            request_same(line + end + b"Host: a" + end + end)
            request_same(line + end)
    parsed = httpparse.parse_request_head(b"GET /small HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                                          8192, 65536)
    assert parsed[3] == [(b"host", b"Host", b"a"), (b"host", b"host", b"b")]
    assert parsed[0] is httpparse.parse_request_head(b"GET / HTTP/1.1\r\n\r\n", 99, 99)[0]


def test_request_with_many_fields():
    """More fields than the scanner keeps on the stack, some invalid or over the limits."""
    fields = b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(200))
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"Accept: */*\r\n\r\n"
    request_same(head)
    request_same(head, 8192, len(head) - 1)
    request_same(head.replace(b"X-F150:", b"X F150:"))
    request_same(head[:-1])
    assert len(httpparse.parse_request_head(head, 8192, 65536)[3]) == 202
