"""Where the gateway leans on aiohttp beyond its plainest API, checked against
the aiohttp installed, so that a change there fails here rather than passing
unseen: a streamed answer's head sent with its first bytes
(server/sse_response.py, an aiohttp class attribute with no public switch),
the guarded TCP site (server/listener.py, on aiohttp's public BaseSite), and
a response's buffered HTTP chunks read in one step (providers/_drain.py, on
the StreamReader's private fields)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from ails.providers._drain import BULK, drain
from ails.server.connections import ConnectionGuard, ConnectionLimits, guarded
from ails.server.listener import listen
from ails.server.sse_response import DEFERS_HEAD, DeferredHeadResponse

EVENT = b"data: 1\n\n"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """``handler`` served at ``GET /`` on 127.0.0.1; its URL, stopped after."""
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{site.port}/"
    finally:
        await runner.cleanup()


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

    async with serving(handler) as url, aiohttp.ClientSession() as session:
        for kind in ("deferred", "plain"):
            async with session.get(f"{url}?kind={kind}") as r:
                assert r.status == 200 and await r.read() == EVENT
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


async def test_drain_is_read_nowait_in_one_step() -> None:
    # A chunked answer, an HTTP chunk per event (as an upstream streams), read
    # once it has all arrived: by drain() and by read_nowait(), from the
    # start and after a partial read (a buffer entry begun), and the reader
    # left in the same state by both.
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        for i in range(12):
            await resp.write(b"data: %d\n\n" % i)
        await resp.write_eof()
        return resp

    def state(content: aiohttp.StreamReader) -> tuple[object, ...]:
        splits = content._http_chunk_splits
        return (
            content._size,
            content._cursor,
            content._buffer_offset,
            list(splits) if splits is not None else None,
            content.at_eof(),
            content._protocol._reading_paused,
        )

    seen: dict[tuple[str, int], tuple[bytes, bytes, tuple[object, ...]]] = {}
    async with serving(handler) as url, aiohttp.ClientSession() as session:
        for name in ("drain", "read_nowait"):
            for head in (0, 3):
                async with session.get(url) as r:
                    content = r.content
                    await content.wait_eof()
                    assert len(content._buffer) > 2  # one entry per HTTP chunk
                    first = await content.read(head) if head else b""
                    data = drain(content) if name == "drain" else content.read_nowait()
                    seen[name, head] = (first, data, state(content))
                    assert drain(content) == b""  # nothing left
    for head in (0, 3):
        assert seen["drain", head] == seen["read_nowait", head]
        first, data, _ = seen["drain", head]
        assert first + data == b"".join(b"data: %d\n\n" % i for i in range(12))
    assert BULK, "aiohttp's StreamReader lacks a field providers/_drain.py uses"


async def test_drain_resumes_a_paused_reader_as_read_nowait_does() -> None:
    # A small read buffer, so that the client's protocol pauses reading
    # (more than twice the buffer waits); each read must resume it, and the
    # whole body come through, by drain() as by read_nowait().
    body = [b"data: %03d %s\n\n" % (i, b"x" * 90) for i in range(60)]

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        for part in body:
            await resp.write(part)
        await resp.write_eof()
        return resp

    async with serving(handler) as url, aiohttp.ClientSession(read_bufsize=256) as session:
        for read in (drain, aiohttp.StreamReader.read_nowait):
            async with session.get(url) as r:
                content, got, paused = r.content, b"", 0
                while True:
                    await asyncio.sleep(0.01)  # let it fill up and pause
                    paused += content._protocol._reading_paused
                    data = read(content) or await content.readany()
                    if not data:
                        break
                    got += data
                assert got == b"".join(body)
                assert paused > 0  # it did pause, and each read let it go on


async def test_drain_raises_the_readers_exception() -> None:
    reader = aiohttp.StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())
    for part in (b"a", b"b", b"c"):
        reader.feed_data(part)
    assert drain(reader) == b"abc"
    for part in (b"d", b"e"):
        reader.feed_data(part)
    reader.set_exception(ValueError("aborted"))
    with pytest.raises(ValueError, match="aborted"):
        drain(reader)


class _Protocol:
    """What a StreamReader asks of its protocol."""

    _reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
