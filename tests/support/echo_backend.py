"""A test upstream: answers every request with a JSON echo of what it received.

Special path segments, anywhere in the path (so a proxy may add a prefix):
status/N answers N; slow?ms=N waits first; big?n=N sends N bytes;
chunked?n=N&parts=K streams a chunked body; headers?name=value sets response headers;
text?n=N&type=T[&chunked=K][&name=value...] sends N bytes of text (K chunks of it) as type T
with the other parameters as response headers (status?code=N sets its status);
pieces?body=TEXT&cuts=I,J,...[&type=T][&gap=MS][&length=1][&gzip=1][&name=value...] sends TEXT
cut at those offsets, one write per piece MS apart (default 20), chunked (ended by the close for
HTTP/1.0) or with Content-Length (length=1), gzipped first with gzip=1 (cuts then apply to the gzipped bytes).  --log FILE appends "METHOD TARGET" for every request received (and "LENGTH SHA256-PREFIX" of its body with --log-bodies).  Run: echo_backend.py --port P --name NAME
"""

import argparse
import asyncio
import hashlib

import orjson
from aiohttp import web
from multidict import CIMultiDict


def make_app(name: str, log_path: str | None = None, log_bodies: bool = False) -> web.Application:
    log = open(log_path, "a", buffering=1) if log_path else None

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if log is not None:
            seen = f" {len(body)} {hashlib.sha256(body).hexdigest()[:16]}" if log_bodies else ""
            log.write(f"{request.method} {request.raw_path}{seen}\n")
        segments = request.path.split("/")
        if "slow" in segments:
            await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
        if "big" in segments:
            size = int(request.query.get("n", "65536"))
            return web.Response(body=b"x" * size, content_type="application/octet-stream")
        if "text" in segments:
            return await _text(request)
        if "pieces" in segments:
            return await _pieces(request)
        if "chunked" in segments:
            size = int(request.query.get("n", "100000"))
            parts = int(request.query.get("parts", "10"))
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            step = max(size // parts, 1)
            sent = 0
            while sent < size:
                await response.write(b"y" * min(step, size - sent))
                sent += step
            await response.write_eof()
            return response
        status = 200
        if "status" in segments[:-1]:
            status = int(segments[segments.index("status") + 1])
        echo_body = orjson.dumps({
            "backend": name,
            "method": request.method,
            "target": request.raw_path,
            "version": f"{request.version.major}.{request.version.minor}",
            "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")]
                        for k, v in request.raw_headers],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        })
        headers = CIMultiDict({"X-Backend": name})
        if "headers" in segments:
            headers.extend(request.query)      # a name given twice: two fields
        return web.Response(status=status, body=echo_body, headers=headers,
                            content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def text_body(size: int) -> bytes:
    """Deterministic text that compresses as real pages do (tests compare it after gunzip)."""
    line = b"%06d the quick brown fox jumps over the lazy dog, %d times over\n"
    lines, total, i = [], 0, 0
    while total < size:
        piece = line % (i, i * 7 % 1000)
        lines.append(piece)
        total += len(piece)
        i += 1
    return b"".join(lines)[:size]


async def _text(request: web.Request) -> web.StreamResponse:
    query = dict(request.query)
    size = int(query.pop("n", "1000"))
    ctype = query.pop("type", "text/plain")
    parts = int(query.pop("chunked", "0"))
    status = int(query.pop("status", "200"))
    headers = dict(query, **{"Content-Type": ctype})
    body = text_body(size)
    if not parts:
        return web.Response(status=status, body=body, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    step = max(size // parts, 1)
    for start in range(0, size, step):
        await response.write(body[start:start + step])
    await response.write_eof()
    return response


async def _pieces(request: web.Request) -> web.StreamResponse:
    query = dict(request.query)
    body = query.pop("body", "").encode("utf-8")
    cuts = [int(c) for c in query.pop("cuts", "").split(",") if c]
    ctype = query.pop("type", "text/html")
    gap = int(query.pop("gap", "20")) / 1000
    with_length = query.pop("length", "") == "1"
    if query.pop("gzip", "") == "1":
        import gzip
        body = gzip.compress(body, mtime=0)
        query["Content-Encoding"] = "gzip"
    response = web.StreamResponse(headers=dict(query, **{"Content-Type": ctype}))
    if with_length:
        response.content_length = len(body)
    elif request.version >= (1, 1):
        response.enable_chunked_encoding()
    # else HTTP/1.0: the close ends the body
    await response.prepare(request)
    bounds = [0, *[c for c in cuts if 0 < c < len(body)], len(body)]
    for start, end in zip(bounds, bounds[1:]):
        await response.write(body[start:end])
        await asyncio.sleep(gap)
    await response.write_eof()
    return response


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--log", help="append one line per request received")
    parser.add_argument("--log-bodies", action="store_true",
                        help="add the body's length and SHA-256 prefix to each log line")
    args = parser.parse_args()
    web.run_app(make_app(args.name, args.log, args.log_bodies), host="127.0.0.1", port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
