"""A plain aiohttp reverse proxy: what a Python user writes first (aiohttp server + ClientSession)."""

from __future__ import annotations

import argparse
import itertools

from aiohttp import ClientSession, web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


def make_app(upstreams: list[str]) -> web.Application:
    """The proxy app: every request goes to the next upstream in turn."""
    targets = itertools.cycle(upstreams)
    app = web.Application(client_max_size=0)

    async def start_session(app: web.Application) -> None:
        app["session"] = ClientSession(auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        url = f"http://{next(targets)}{request.path_qs}"
        async with app["session"].request(request.method, url, headers=headers, data=body,
                                          allow_redirects=False) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=payload, headers=out)

    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    """Command line: --port P --upstream HOST:PORT (repeatable)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port,
                access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
