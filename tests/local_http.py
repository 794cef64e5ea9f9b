"""A stand-in HTTP server (aiohttp, one handler for every path) on a free port of 127.0.0.1,
for the parts of current Stripe that localstripe does not serve."""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from tests.conftest import free_port


@contextmanager
def serving_locally(handle: Callable[[web.Request], Awaitable[web.Response]]) -> Iterator[str]:
    """Yields the server's base URL; it stops when the block ends."""
    port = free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
