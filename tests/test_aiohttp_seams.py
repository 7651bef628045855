"""Where the gateway leans on aiohttp beyond its plainest API, checked against
the aiohttp installed, so that a change there fails here rather than passing
unseen: a streamed answer's head sent with its first bytes
(server/sse_response.py, an aiohttp class attribute with no public switch),
and the guarded TCP site (server/listener.py, on aiohttp's public BaseSite)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from ails.server.connections import ConnectionGuard, ConnectionLimits, guarded
from ails.server.listener import listen
from ails.server.sse_response import DEFERS_HEAD, DeferredHeadResponse

EVENT = b"data: 1\n\n"


async def test_a_deferred_head_goes_out_with_the_first_bytes() -> None:
    # Bytes the connection's writer had sent after prepare() and after the first write.
    sent: dict[str, tuple[int, int]] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        kind = request.query["kind"]
        resp = DeferredHeadResponse() if kind == "deferred" else web.StreamResponse()
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        before = request.writer.output_size
        await resp.write(EVENT)
        sent[kind] = (before, request.writer.output_size)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession() as session:
            for kind in ("deferred", "plain"):
                url = f"http://127.0.0.1:{site.port}/?kind={kind}"
                async with session.get(url) as r:
                    assert r.status == 200 and await r.read() == EVENT
    finally:
        await runner.cleanup()
    assert DEFERS_HEAD, "aiohttp no longer has StreamResponse._send_headers_immediately"
    # aiohttp's default: the head alone at prepare() (so the figure above sees it) ...
    assert sent["plain"][0] > 0
    # ... and ours: nothing until the first write, then the head and the event together.
    assert sent["deferred"][0] == 0
    assert sent["deferred"][1] == sent["plain"][1]


async def test_the_guarded_site_serves_through_the_guard_and_stops_with_its_runner() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"guarded": guarded(request) is not None})

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    guard = ConnectionGuard(ConnectionLimits())
    try:
        site = await listen(runner, guard, "127.0.0.1", 0)
        host, port = site.address
        assert host == "127.0.0.1" and port > 0
        assert site.name == f"http://127.0.0.1:{port}"
        assert site in runner.sites
        url = f"http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            assert await r.json() == {"guarded": True}
            assert guard.open == 1  # the guard counted the connection
    finally:
        await runner.cleanup()
    assert site not in runner.sites
    with pytest.raises(OSError):  # the listening socket is closed
        await asyncio.open_connection("127.0.0.1", port)
