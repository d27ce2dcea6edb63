"""Nanoseconds per call of the hot-path parsers and routers, pure Python vs Cython.

Run: ``.venv/bin/python -m bench.micro_parser`` (after ``make extensions``).
Prints the best of several timeit repeats for each implementation, timed in
process CPU time: on this shared 2-core machine wall time mostly measures the
neighbours.
"""

from __future__ import annotations

import importlib
import time
import timeit

from gateway.config.model import Listen, Location, LocationSettings, Server
from gateway.http.plan import HIDDEN_RESPONSE

# A typical browser request head (Firefox loading a script), 9 header fields.
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
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: app\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 13\r\nConnection: keep-alive\r\n\r\n")
# An nginx upstream's head as the proxy relays it (Server, Date, Connection hidden).
NGINX_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"hello, world\n"
)
CHUNKED = b"".join(b"%x\r\n%s\r\n" % (64, b"x" * 64) for _ in range(16)) + b"0\r\n\r\n"


def _locations():
    settings = LocationSettings()
    return [
        Location("", "/", settings),
        Location("=", "/health", settings),
        Location("^~", "/static/", settings),
        Location("", "/api/", settings, [Location("", "/api/v2/", settings)]),
        Location("~", r"\.php$", settings),
        Location("~*", r"\.(gif|jpg|png)$", settings),
    ]


def _servers():
    listen = [Listen("0.0.0.0", 80)]
    return [Server(listen, [name], [], LocationSettings())
            for name in ("default", "www.example.com", "*.example.org", "www.test.*")]


def relay_head(parser, data: bytes):
    """What proxy.py does with an upstream head: parse, frame, drop hidden fields, join."""
    version, status, _reason, headers, _consumed = parser.parse_response_head(data, 65536)
    kind, length = parser.response_body_framing(status, headers, "GET")
    close = version == 10
    lines = []
    for lower, name, value in headers:
        if lower in HIDDEN_RESPONSE:
            if lower == b"connection" and b"close" in value.lower():
                close = True
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    return kind, length, close, b"".join(lines)


def measure(label: str, stmt, number: int) -> float:
    timer = timeit.Timer(stmt, timer=time.process_time)
    best = min(timer.repeat(number=number, repeat=7)) / number * 1e9
    print(f"  {label:<42} {best:9.0f} ns")
    return best


def run(kind: str, parser, router):
    print(f"{kind}:")
    results = {}
    results["head"] = measure("parse_request_head (browser, 9 headers)",
                              lambda: parser.parse_request_head(BROWSER, 8192, 65536), 20000)
    _m, target, version, headers, _n, _odd = parser.parse_request_head(BROWSER, 8192, 65536)
    measure("request_body_framing", lambda: parser.request_body_framing(headers, version), 50000)
    measure("split_target", lambda: parser.split_target(target), 50000)
    measure("parse_response_head (4 headers)",
            lambda: parser.parse_response_head(RESPONSE, 65536), 20000)
    measure("relay head: parse+framing+filter (nginx)",
            lambda: relay_head(parser, NGINX_RESPONSE), 20000)
    if hasattr(parser, "_scan_response_head"):      # compiled only: one C pass, one bytes
        parser._set_hidden_response(HIDDEN_RESPONSE)
        measure("relay head: _scan_response_head (nginx)",
                lambda: parser._scan_response_head(NGINX_RESPONSE, 65536, False), 50000)
    measure("ChunkedDecoder.feed (16 x 64 B, collect)",
            lambda: parser.ChunkedDecoder().feed(CHUNKED, True), 5000)
    locations = router.LocationRouter(_locations())
    measure("LocationRouter.match (/static/app.js)", lambda: locations.match("/static/app.js"), 50000)
    measure("LocationRouter.match (/api/v2/x.php)", lambda: locations.match("/api/v2/x.php"), 50000)
    servers = router.ServerRouter(_servers())
    measure("ServerRouter.select (www.example.com)",
            lambda: servers.select(("0.0.0.0", 80), "www.example.com"), 50000)
    return results


def main():
    py = run("python", importlib.import_module("gateway.http.parser_py"),
             importlib.import_module("gateway.routing.router_py"))
    cy = run("cython", importlib.import_module("_fastpath.httpparse"),
             importlib.import_module("_fastpath.router"))
    print(f"browser head: {py['head']:.0f} ns (python) vs {cy['head']:.0f} ns (cython), "
          f"{py['head'] / cy['head']:.1f}x")


if __name__ == "__main__":
    main()
