"""Fuzz target: response heads and their body framing, both parser twins compared."""

import atheris

import harness

with atheris.instrument_imports():
    from _fastpath import httpparse
    from gateway.errors import InvalidUpstreamResponse
    from gateway.http import parser_py

SEEDS = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
    b"HTTP/1.0 404\nContent-Type: text/plain\n\n",
    b"HTTP/1.1 302 Found it\r\nLocation: /x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
]


def same(name, *args):
    expected = harness.outcome(getattr(parser_py, name), *args, errors=InvalidUpstreamResponse)
    got = harness.outcome(getattr(httpparse, name), *args, errors=InvalidUpstreamResponse)
    assert got == expected, (name, args, expected, got)
    return got


def test_one_input(data: bytes):
    for max_head in (65536, 64):
        result = same("parse_response_head", data, max_head)
        if result[0] == "ok" and result[1] is not None:
            _version, status, _reason, headers, _consumed = result[1]
            for method in (b"GET", b"HEAD"):
                same("response_body_framing", status, headers, method)


if __name__ == "__main__":
    harness.run(test_one_input, SEEDS)
