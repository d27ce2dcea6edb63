"""A real upstream for the process tests: ``/slow`` answers after 2 s, printing "received" first."""

import asyncio
import sys

from aiohttp import web


async def slow(request):
    print("received", flush=True)
    await asyncio.sleep(2.0)
    return web.Response(text="slow done")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
