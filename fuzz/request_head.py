"""Fuzz target: request heads, their body framing and their targets, both parser twins compared."""

import atheris

import harness

with atheris.instrument_imports():
    from _fastpath import httpparse
    from gateway.errors import HttpError
    from gateway.http import parser_py

SEEDS = [
    b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    b"\r\nPOST /upload HTTP/1.0\nContent-Length: 3\n\nabc",
    b"PUT http://a.b:81/x/../y%2F?z HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nX:\t \r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
]
LIMITS = ((8192, 65536), (32, 96))


def same(name, *args, errors=HttpError):
    expected = harness.outcome(getattr(parser_py, name), *args, errors=errors)
    got = harness.outcome(getattr(httpparse, name), *args, errors=errors)
    assert got == expected, (name, args, expected, got)
    return got


def test_one_input(data: bytes):
    for max_line, max_head in LIMITS:
        result = same("parse_request_head", data, max_line, max_head)
        if result[0] == "ok" and result[1] is not None:
            _method, target, version, headers, _consumed, _odd = result[1]
            same("request_body_framing", headers, version)
            same("split_target", target)


if __name__ == "__main__":
    harness.run(test_one_input, SEEDS)
