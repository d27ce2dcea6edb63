"""The head parser, body framing, chunked decoder and target splitter, on both implementations."""

import random

import pytest

from gateway.errors import (BadRequest, HeadersTooLarge, InvalidUpstreamResponse,
                            NotImplementedMethod, UriTooLong, VersionNotSupported)

BROWSER = (
    b"GET /static/app.js?v=3 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: */*\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=abc123; theme=dark\r\n"
    b"Sec-Fetch-Dest: script\r\n"
    b"\r\n"
)


def head(parser, data, max_line=8192, max_head=65536):
    return parser.parse_request_head(data, max_line, max_head)


# Request heads -------------------------------------------------------------

def test_browser_request(parser):
    method, target, version, headers, consumed, odd_names = head(parser, BROWSER + b"BODY")
    assert odd_names is False
    assert (method, target, version, consumed) == (b"GET", b"/static/app.js?v=3", 11, len(BROWSER))
    assert headers[0] == (b"host", b"Host", b"www.example.com")
    assert headers[-1] == (b"sec-fetch-dest", b"Sec-Fetch-Dest", b"script")
    assert len(headers) == 9


def test_incomplete_head_at_every_split(parser):
    for cut in range(len(BROWSER)):
        assert head(parser, BROWSER[:cut]) is None, cut
    assert head(parser, BROWSER) is not None


def test_bare_lf_and_leading_empty_lines(parser):
    data = b"\r\n\n\r\nPOST /x HTTP/1.0\nA:1\nb:  two  \n\n"
    method, target, version, headers, consumed, _odd = head(parser, data)
    assert (method, target, version, consumed) == (b"POST", b"/x", 10, len(data))
    assert headers == [(b"a", b"A", b"1"), (b"b", b"b", b"two")]


def test_value_whitespace_and_empty_value(parser):
    data = b"GET / HTTP/1.1\r\nX-Empty:\r\nX-Tabs:\t a b \t\r\n\r\n"
    assert head(parser, data)[3] == [(b"x-empty", b"X-Empty", b""), (b"x-tabs", b"X-Tabs", b"a b")]


def test_several_spaces_between_request_line_parts(parser):
    assert head(parser, b"GET   /a   HTTP/1.1\r\n\r\n")[:3] == (b"GET", b"/a", 11)


@pytest.mark.parametrize("line", [
    b"GET /\r\n",                       # HTTP/0.9
    b"GET / HTTP/1.1 \r\n",             # trailing space
    b"GET / http/1.1\r\n",
    b"GET / HTTP/1.1x\r\n",
    b"GET / HTTP/11.1\r\n",
    b"GET / HTTP/0.9\r\n",
    b" GET / HTTP/1.1\r\n",
    b"G(T / HTTP/1.1\r\n",             # "(" is not a token character
    b"GET\t/ HTTP/1.1\r\n",
    b"GET /a\x00b HTTP/1.1\r\n",
    b"GET /a\x7fb HTTP/1.1\r\n",
    b"GET / HTTP/1.1\rX\r\n",
    b"GET * HTTP/1.1\r\n",              # asterisk-form only for OPTIONS
    b"GET  HTTP/1.1\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",   # TLS on the plain port
])
def test_bad_request_line(parser, line):
    with pytest.raises(BadRequest):
        head(parser, line + b"\r\n")


@pytest.mark.parametrize("line", [b"GET / HTTP/2.0\r\n", b"GET / HTTP/1.2\r\n", b"GET / HTTP/3.0\r\n"])
def test_unsupported_version(parser, line):
    with pytest.raises(VersionNotSupported) as info:
        head(parser, line + b"\r\n")
    assert info.value.status == 505


def test_options_asterisk(parser):
    assert head(parser, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")[1] == b"*"


@pytest.mark.parametrize("line", [
    b" folded",                 # obs-fold
    b"\tfolded",
    b"Name : value",            # space before the colon
    b"Name\t: value",
    b"no colon",
    b": empty name",
    b"Na\x7fme: v",              # CTL, SP and DEL are a 400 in nginx too
    b"Na\x01me: v",
    b"Name: a\x00b",
    b"Name: a\rb",
    b"Name: a\x01b",
    b"Name: a\x7fb",
])
def test_bad_header_line(parser, line):
    with pytest.raises(BadRequest):
        head(parser, b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n")


@pytest.mark.parametrize("name", [b"X_Y", b"_", b"Na(me", b"X.Y", b"caf\xc3\xa9", b"a@b;c"])
def test_odd_names(parser, name):
    """Names nginx takes but calls invalid: kept, and odd_names says the head has one
    (gateway/http/header_names.py applies underscores_in_headers, ignore_invalid_headers)."""
    parsed = head(parser, b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b": v\r\nX-Z: w\r\n\r\n")
    assert parsed[3] == [(b"host", b"Host", b"a"), (name.lower(), name, b"v"), (b"x-z", b"X-Z", b"w")]
    assert parsed[5] is True
    assert head(parser, b"GET / HTTP/1.1\r\nHost: a\r\nX-Z9: w\r\n\r\n")[5] is False


def test_obs_text_allowed_in_values(parser):
    assert head(parser, b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n")[3] == [(b"x", b"X", b"caf\xc3\xa9")]


def test_request_line_limit(parser):
    line = b"GET /" + b"a" * 95 + b" HTTP/1.1"        # 109 bytes
    assert head(parser, line + b"\r\n\r\n", max_line=109) is not None
    with pytest.raises(UriTooLong) as info:
        head(parser, line + b"\r\n\r\n", max_line=108)
    assert info.value.status == 414
    # An unfinished line that is already too long fails without waiting for more.
    with pytest.raises(UriTooLong):
        head(parser, line, max_line=108)
    assert head(parser, line + b"\r", max_line=109) is None


def test_header_line_and_head_limits(parser):
    data = b"GET / HTTP/1.1\r\nX: " + b"v" * 97 + b"\r\n\r\n"    # header line of 100 bytes
    assert head(parser, data, max_line=100) is not None
    with pytest.raises(HeadersTooLarge) as info:
        head(parser, data, max_line=99)
    assert info.value.status == 431
    with pytest.raises(HeadersTooLarge):
        head(parser, data[:-4], max_line=99)                 # still unfinished
    assert head(parser, data, max_head=len(data)) is not None
    with pytest.raises(HeadersTooLarge):
        head(parser, data, max_head=len(data) - 1)
    with pytest.raises(HeadersTooLarge):
        head(parser, data[:-2], max_head=len(data) - 3)


def test_accepts_bytearray_and_memoryview(parser):
    assert head(parser, bytearray(BROWSER)) == head(parser, BROWSER)
    assert head(parser, memoryview(BROWSER)) == head(parser, BROWSER)
    assert parser.split_target(bytearray(b"/a/../b")) == ("/b", "", "/a/../b")
    assert parser.ChunkedDecoder().feed(memoryview(b"1\r\nx\r\n"), True) == (6, [b"x"])
    assert parser.parse_response_head(bytearray(b"HTTP/1.1 200 OK\n\n"), 99)[1] == 200


# Request body framing -----------------------------------------------------

def hdrs(*pairs):
    return [(n.lower(), n, v) for n, v in pairs]


def test_request_framing(parser):
    frame = parser.request_body_framing
    assert frame([], 11) == ("none", 0)
    assert frame(hdrs((b"Content-Length", b"42")), 11) == ("length", 42)
    assert frame(hdrs((b"Content-Length", b"0")), 10) == ("length", 0)
    assert frame(hdrs((b"Transfer-Encoding", b"Chunked")), 11) == ("chunked", 0)
    assert frame(hdrs((b"content-length", b"9223372036854775807")), 11) == ("length", 2 ** 63 - 1)


@pytest.mark.parametrize("pairs,version,error", [
    (((b"Content-Length", b"1"), (b"Content-Length", b"1")), 11, BadRequest),
    (((b"Content-Length", b"1, 1"),), 11, BadRequest),
    (((b"Content-Length", b"-1"),), 11, BadRequest),
    (((b"Content-Length", b"+1"),), 11, BadRequest),
    (((b"Content-Length", b""),), 11, BadRequest),
    (((b"Content-Length", b"9223372036854775808"),), 11, BadRequest),
    (((b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")), 11, BadRequest),
    (((b"Transfer-Encoding", b"chunked"),), 10, BadRequest),
    (((b"Transfer-Encoding", b"gzip, chunked"),), 11, NotImplementedMethod),
    (((b"Transfer-Encoding", b"identity"),), 11, NotImplementedMethod),
    (((b"Transfer-Encoding", b"chunked, chunked"),), 11, BadRequest),
    (((b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")), 11, BadRequest),
    (((b"Transfer-Encoding", b""),), 11, BadRequest),
])
def test_request_framing_errors(parser, pairs, version, error):
    with pytest.raises(error):
        parser.request_body_framing(hdrs(*pairs), version)


# Response heads -----------------------------------------------------------

def test_response_head(parser):
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A:  b \r\n\r\nabc"
    version, status, reason, headers, consumed = parser.parse_response_head(data, 4096)
    assert (version, status, reason, consumed) == (11, 404, b"Not Found", len(data) - 3)
    assert headers == [(b"content-length", b"Content-Length", b"3"), (b"x-a", b"X-A", b"b")]
    assert parser.parse_response_head(b"HTTP/1.0 200\n\n", 4096) == (10, 200, b"", [], 14)
    assert parser.parse_response_head(b"HTTP/1.1 200 \r\n\r\n", 4096)[2] == b""
    for cut in range(len(data) - 3):
        assert parser.parse_response_head(data[:cut], 4096) is None


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/1.1 099 x\r\n\r\n", b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200OK\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"HTTP/1.1 200 O\x00K\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
])
def test_bad_response_head(parser, data):
    with pytest.raises(InvalidUpstreamResponse):
        parser.parse_response_head(data, 4096)


def test_response_head_limit(parser):
    data = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"
    assert parser.parse_response_head(data, len(data)) is not None
    with pytest.raises(InvalidUpstreamResponse):
        parser.parse_response_head(data, len(data) - 1)
    with pytest.raises(InvalidUpstreamResponse):
        parser.parse_response_head(data[:-2], len(data) - 3)


def test_response_framing(parser):
    frame = parser.response_body_framing
    cl = hdrs((b"Content-Length", b"10"))
    assert frame(200, cl, b"HEAD") == ("none", 0)
    assert frame(200, cl, "HEAD") == ("none", 0)
    for status in (101, 199, 204, 304):
        assert frame(status, cl, b"GET") == ("none", 0)
    assert frame(200, cl, b"GET") == ("length", 10)
    assert frame(200, [], b"GET") == ("close", 0)
    assert frame(200, hdrs((b"Transfer-Encoding", b"gzip, chunked")), b"GET") == ("chunked", 0)
    with pytest.raises(InvalidUpstreamResponse, match="at the same time"):    # as nginx 1.23+
        frame(200, hdrs((b"Transfer-Encoding", b"gzip, chunked"), (b"Content-Length", b"3")), b"GET")
    assert frame(200, hdrs((b"Transfer-Encoding", b"gzip")), b"GET") == ("close", 0)
    with pytest.raises(InvalidUpstreamResponse):
        frame(200, hdrs((b"Content-Length", b"x")), b"GET")
    with pytest.raises(InvalidUpstreamResponse):
        frame(200, cl + cl, b"GET")


# Chunked bodies -----------------------------------------------------------

CHUNKED = b"5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n"


def test_chunked_whole(parser):
    decoder = parser.ChunkedDecoder()
    used, pieces = decoder.feed(CHUNKED + b"GET / HTTP/1.1\r\n", collect=True)
    assert used == len(CHUNKED) and decoder.done
    assert b"".join(pieces) == b"hello" + b"abcdefghijklmnopqrstuvwxyz"
    assert decoder.feed(b"more", collect=True) == (0, [])


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_chunked_split_anywhere(parser, step):
    decoder = parser.ChunkedDecoder()
    total, payload = 0, b""
    for i in range(0, len(CHUNKED), step):
        assert not decoder.done
        used, pieces = decoder.feed(CHUNKED[i:i + step], True)
        assert used == len(CHUNKED[i:i + step])
        total += used
        payload += b"".join(pieces)
    assert decoder.done and total == len(CHUNKED)
    assert payload == b"helloabcdefghijklmnopqrstuvwxyz"


def test_chunked_without_collect(parser):
    decoder = parser.ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n") == (8, None)
    assert decoder.feed(b"0\r\n\r\nX") == (5, None) and decoder.done


def test_chunked_size_forms(parser):
    for body in (b"A \t;ext\r\n0123456789\r\n0\r\n\r\n", b"00a\r\n0123456789\r\n0000\r\n\r\n"):
        decoder = parser.ChunkedDecoder()
        used, pieces = decoder.feed(body, True)
        assert decoder.done and used == len(body) and b"".join(pieces) == b"0123456789"


@pytest.mark.parametrize("body", [
    b"x\r\n", b"\r\n", b"5\nhello\r\n", b"5\r\nhelloX\r\n", b"5\r\nhello\n0\r\n\r\n",
    b"5 x\r\n", b"5;a\x00\r\n", b"5\r\rhello", b"0\r\n\n", b"0\r\nA: b\n",
    b"10000000000000000\r\n",                          # 17 hex digits
    b"8000000000000000\r\n",                           # 2**63
    b"1;" + b"e" * 5000 + b"\r\n",                     # overlong size line
    b"0\r\n" + b"T: " + b"v" * 9000 + b"\r\n\r\n",     # overlong trailer
])
def test_chunked_errors(parser, body):
    with pytest.raises(BadRequest):
        parser.ChunkedDecoder().feed(body, True)


def test_chunked_largest_size(parser):
    decoder = parser.ChunkedDecoder()
    assert decoder.feed(b"7fffffffffffffff\r\nabc", True) == (21, [b"abc"])
    assert not decoder.done


# Targets ------------------------------------------------------------------

@pytest.mark.parametrize("target,expected", [
    (b"/", ("/", "", "/")),
    (b"/a/b?x=1&y=%20", ("/a/b", "x=1&y=%20", "/a/b?x=1&y=%20")),
    (b"//a///b//", ("/a/b/", "", "//a///b//")),
    (b"/a/./b/.", ("/a/b/", "", "/a/./b/.")),
    (b"/a/b/../c", ("/a/c", "", "/a/b/../c")),
    (b"/a/b/..", ("/a/", "", "/a/b/..")),
    (b"/a/..", ("/", "", "/a/..")),
    (b"/a/...", ("/a/...", "", "/a/...")),
    (b"/a/..b/.c", ("/a/..b/.c", "", "/a/..b/.c")),
    (b"/a%2Fb", ("/a/b", "", "/a%2Fb")),
    (b"/a/%2e%2E/b", ("/b", "", "/a/%2e%2E/b")),
    (b"/a%2F..%2Fb", ("/b", "", "/a%2F..%2Fb")),
    (b"/%3F%23%25", ("/?#%", "", "/%3F%23%25")),       # kept literally
    (b"/a%3fb?c%3fd", ("/a?b", "c%3fd", "/a%3fb?c%3fd")),
    (b"/caf%C3%A9", ("/caf\u00e9", "", "/caf%C3%A9")),
    (b"/x#frag", ("/x", "", "/x#frag")),
    (b"/x?a#frag", ("/x", "a", "/x?a#frag")),
    (b"/x/..?a", ("/", "a", "/x/..?a")),
    (b"/x/.#f", ("/x/", "", "/x/.#f")),
    (b"/?", ("/", "", "/?")),
    (b"/a+b", ("/a+b", "", "/a+b")),
    (b"http://example.com/a/../b?q", ("/b", "q", "/a/../b?q")),
    (b"HTTP://example.com:8080", ("/", "", "/")),
    (b"http://[::1]:80?x=1", ("/", "x=1", "/?x=1")),
    (b"*", ("*", "", "*")),
])
def test_split_target(parser, target, expected):
    assert parser.split_target(target) == expected


def test_split_target_keeps_undecodable_bytes(parser):
    uri, _args, request_uri = parser.split_target(b"/a%FF\xfe")
    assert uri.encode("utf-8", "surrogateescape") == b"/a\xff\xfe"
    assert request_uri.encode("utf-8", "surrogateescape") == b"/a%FF\xfe"


@pytest.mark.parametrize("target", [
    b"/..", b"/../a", b"/a/../..", b"/%2e%2e", b"/a/%2E%2E/..",
    b"/a%", b"/a%4", b"/a%zz", b"/a%4g", b"/a%00b",
    b"", b"a/b", b"example.com:80", b"http:/x", b"http://", b"http://a@b/",
    b"http://host:80x/", b"http://[zz]/", b"1http://a/",
])
def test_split_target_errors(parser, target):
    with pytest.raises(BadRequest):
        parser.split_target(target)


# The two implementations agree on random and mutated input ------------------

def outcome(call, *args):
    """A comparable result: the value, or the exception class and status."""
    try:
        return ("ok", call(*args))
    except Exception as exc:        # noqa: BLE001 - the class is what we compare
        return ("error", type(exc).__name__)


ALPHABET = b"GETPOSHD /?#%.:;,\t\r\n\x00\x7f\x80\xffaAzZ019*-_~2eEfF[]@+="


def mutations(rng, seeds, count):
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0:
                data[pos:pos] = bytes([rng.choice(ALPHABET)])
            elif op == 1 and data:
                del data[min(pos, len(data) - 1)]
            elif op == 2 and data:
                data[min(pos, len(data) - 1)] = rng.choice(ALPHABET)
            else:
                data = data[:pos]
        yield bytes(data)


REQUESTS = [
    BROWSER,
    b"\r\nPOST /upload HTTP/1.0\nContent-Length: 3\n\nabc",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a.b:81/x/../y?z HTTP/1.1\r\nX:\t \r\n\r\n",
]


def test_request_heads_agree(both_parsers):
    py, cy = both_parsers
    rng = random.Random(1234)
    for data in mutations(rng, REQUESTS, 4000):
        for max_line, max_head in ((8192, 65536), (20, 100), (40, 60)):
            assert (outcome(py.parse_request_head, data, max_line, max_head)
                    == outcome(cy.parse_request_head, data, max_line, max_head)), data
    for data in (bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
                 for _ in range(3000)):
        assert outcome(py.parse_request_head, data, 30, 50) == \
            outcome(cy.parse_request_head, data, 30, 50), data


def test_response_heads_agree(both_parsers):
    py, cy = both_parsers
    rng = random.Random(99)
    seeds = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"HTTP/1.0 404\n\n",
             b"HTTP/1.1 302 Found it\r\nLocation: /x\r\nA:b\r\n\r\n"]
    for data in mutations(rng, seeds, 4000):
        for max_head in (4096, 30):
            assert outcome(py.parse_response_head, data, max_head) == \
                outcome(cy.parse_response_head, data, max_head), data


def test_framing_agrees(both_parsers):
    py, cy = both_parsers
    rng = random.Random(7)
    values = [b"0", b"12", b"chunked", b"Chunked ,", b"gzip, chunked", b"", b" 5", b"5,5",
              b"99999999999999999999", b"identity", b"CHUNKED", b",chunked,"]
    names = [b"Content-Length", b"Transfer-Encoding", b"X"]
    for _ in range(3000):
        headers = hdrs(*[(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(0, 3))])
        version = rng.choice((10, 11))
        assert outcome(py.request_body_framing, headers, version) == \
            outcome(cy.request_body_framing, headers, version)
        status = rng.choice((100, 200, 204, 304, 404))
        method = rng.choice((b"GET", b"HEAD", "HEAD"))
        assert outcome(py.response_body_framing, status, headers, method) == \
            outcome(cy.response_body_framing, status, headers, method)


def chunked_run(module, data, cuts):
    decoder = module.ChunkedDecoder()
    results = []
    start = 0
    try:
        for end in cuts + [len(data)]:
            results.append(decoder.feed(data[start:end], True))
            start = end
    except Exception as exc:        # noqa: BLE001
        results.append(type(exc).__name__)
    return results, decoder.done


def test_chunked_agrees(both_parsers):
    py, cy = both_parsers
    rng = random.Random(5)
    seeds = [CHUNKED, b"a;x=y\r\n0123456789\r\n0\r\n\r\nNEXT", b"0\r\n\r\n", b"1 ; e\r\nx\r\n0\r\nA:b\r\n\r\n"]
    for data in mutations(rng, seeds, 3000):
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 3)))
        assert chunked_run(py, data, cuts) == chunked_run(cy, data, cuts), data


def test_targets_agree(both_parsers):
    py, cy = both_parsers
    rng = random.Random(11)
    seeds = [b"/a/b/../c?x#y", b"/%2e%2E/%2F/x", b"http://h:1/./a", b"//.././", b"/a%3F?b#c", b"*"]
    alphabet = b"/.%?#2eEfF3aA0:[]h"
    for data in mutations(rng, seeds, 3000):
        assert outcome(py.split_target, data) == outcome(cy.split_target, data), data
    for _ in range(3000):
        data = b"/" + bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert outcome(py.split_target, data) == outcome(cy.split_target, data), data


def test_any_bytes_agree(both_parsers):
    py, cy = both_parsers
    rng = random.Random(2024)
    for _ in range(2000):
        data = rng.randbytes(rng.randint(0, 40))
        assert outcome(py.parse_request_head, data, 16, 32) == \
            outcome(cy.parse_request_head, data, 16, 32), data
        assert outcome(py.parse_response_head, data, 32) == \
            outcome(cy.parse_response_head, data, 32), data
        assert outcome(py.split_target, data) == outcome(cy.split_target, data), data
        assert outcome(py.split_target, b"/" + data) == outcome(cy.split_target, b"/" + data)
        assert chunked_run(py, data, [5]) == chunked_run(cy, data, [5]), data


# The selector ---------------------------------------------------------------

def implementation_in_subprocess(env_value):
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    env.pop("GATEWAY_NO_EXTENSIONS", None)
    if env_value is not None:
        env["GATEWAY_NO_EXTENSIONS"] = env_value
    code = ("import warnings; warnings.simplefilter('error');"
            "from gateway.http import parser; from gateway.routing import router;"
            "print(parser.IMPLEMENTATION, router.IMPLEMENTATION,"
            " parser.parse_request_head.__module__, router.LocationRouter.__module__)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_selector_prefers_the_extensions():
    assert implementation_in_subprocess(None) == [
        "cython", "cython", "_fastpath.httpparse", "_fastpath.router"]


def test_selector_honours_no_extensions():
    assert implementation_in_subprocess("1") == [
        "python", "python", "gateway.http.parser_py", "gateway.routing.router_py"]


def test_selector_warns_once_when_not_built(monkeypatch):
    from gateway import _select
    monkeypatch.delenv("GATEWAY_NO_EXTENSIONS", raising=False)
    monkeypatch.setattr(_select, "_warned", False)
    with pytest.warns(RuntimeWarning, match="make extensions"):
        assert _select.load_fast("no_such_module") is None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _select.load_fast("no_such_module") is None


# Side by side with nginx ------------------------------------------------------

NGINX_CONF = """pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "$uri|$args|$request_uri"; }}
    }}
}}
"""

NGINX_TARGETS = [
    b"/", b"/a/b?x=1&y=%20", b"//a///b//", b"/a/./b/.", b"/a/b/../c", b"/a/b/..", b"/a/..",
    b"/a/...", b"/a/..b/.c", b"/a%2Fb", b"/a/%2e%2E/b", b"/a%2F..%2Fb", b"/%3F%23%25",
    b"/a%3fb?c%3fd", b"/caf%C3%A9", b"/x#frag", b"/x?a#frag", b"/x/..?a", b"/x/.#f", b"/?",
    b"/a+b", b"/..", b"/../a", b"/a/../..", b"/%2e%2e", b"/a%", b"/a%zz", b"/a%00b", b"/a%FF",
    b"/a/.%2e/b", b"/a/%2e./b", b"/a/.%2e", b"/.a/..b/...", b"/a;b=c/d",
    b"http://example.com/a/../b?q", b"http://example.com:8080", b"http://example.com?x=1",
]


def nginx_answer(port, target):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


@pytest.mark.nginx
def test_split_target_matches_nginx(parser, start_nginx, tmp_path):
    from tests.support.processes import free_port
    port = free_port()
    nginx = start_nginx(NGINX_CONF.format(dir=tmp_path, port=port), port)
    for target in NGINX_TARGETS:
        status, body = nginx_answer(nginx.port, target)
        try:
            uri, args, request_uri = parser.split_target(target)
        except BadRequest:
            assert status == 400, target
            continue
        assert status == 200, target
        nginx_uri, nginx_args, nginx_request_uri = body.split(b"|")
        assert uri.encode("utf-8", "surrogateescape") == nginx_uri, target
        assert args.encode("utf-8", "surrogateescape") == nginx_args, target
        if target.startswith(b"/"):
            assert request_uri.encode("utf-8", "surrogateescape") == nginx_request_uri, target


# Each row: a raw head, nginx 1.22's status, ours.  Where they differ the
# difference is deliberate and documented in gateway/http/parser_py.py.
HEAD_STATUSES = [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, 200),
    (b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n", 200, 200),
    (b"GET /\r\n\r\n", "0.9", 400),                        # nginx answers HTTP/0.9
    (b"GET / HTTP/0.9\r\n\r\n", 400, 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, 505),
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 200, 505),         # nginx serves it as 1.1
    (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 200, 400),        # nginx allows trailing spaces
    (b"GET  /  HTTP/1.1\r\nHost: a\r\n\r\n", 200, 200),
    (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, 400),
    (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, 400),
    (b"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n fold\r\n\r\n", 400, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 200, 400),   # nginx only refuses NUL
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: y\r\n\r\n", 200, 200),   # both drop the field
    (b"GET / HTTP/1.1\r\nHost: a\r\nX_Y(: y\r\n\r\n", 200, 200),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX\x7fY: y\r\n\r\n", 400, 400),
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, 414),
    # nginx answers 400 "Request Header Or Cookie Too Large", we use RFC 6585's 431.
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 1100 + b"\r\n\r\n", 400, 431),
]

NGINX_LIMITS_CONF = NGINX_CONF.replace(
    "access_log off;", "access_log off;\n    large_client_header_buffers 4 1024;")


def nginx_status(port, raw):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/"):
        return "0.9"        # a bare body: nginx served it as an HTTP/0.9 request
    return int(data.split(b" ", 2)[1])


@pytest.mark.nginx
def test_head_statuses_against_nginx(parser, start_nginx, tmp_path):
    from tests.support.processes import free_port
    port = free_port()
    nginx = start_nginx(NGINX_LIMITS_CONF.format(dir=tmp_path, port=port), port)
    for raw, nginx_expected, ours_expected in HEAD_STATUSES:
        assert nginx_status(nginx.port, raw) == nginx_expected, raw
        try:
            parsed = parser.parse_request_head(raw, 1024, 4096)
            ours = 200 if parsed is not None else None
        except Exception as exc:        # noqa: BLE001 - every HttpError carries .status
            ours = exc.status
        assert ours == ours_expected, raw
