"""A minimal aiohttp pass-through proxy: the practical floor for a Python gateway.

Bytes in, bytes out, nothing else: one shared ``aiohttp.ClientSession``; it
forwards the method, path, query, body and ``Content-Type`` (and
``Authorization`` when present) to the upstream, and streams the response back
chunk by chunk as ``iter_any()`` yields it, with the upstream's status,
``Content-Type`` and ``Content-Length`` (chunked when it has none). No parsing,
no validation, no logging.

Usage: ``python bench/passthrough_proxy.py --upstream http://127.0.0.1:M/v1 --port 0``
prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from _loop import run_on_loop

FORWARD = ("Content-Type", "Authorization")


def make_app(upstream: str) -> web.Application:
    parts = urlsplit(upstream)
    origin = f"{parts.scheme}://{parts.netloc}"
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def on_startup(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        app[session_key] = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )

    async def on_cleanup(app: web.Application) -> None:
        await app[session_key].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {h: request.headers[h] for h in FORWARD if h in request.headers}
        session = app[session_key]
        async with session.request(
            request.method, origin + request.path_qs, data=body, headers=headers
        ) as up:
            resp = web.StreamResponse(status=up.status)
            ctype = up.headers.get("Content-Type")
            if ctype is not None:
                resp.headers["Content-Type"] = ctype
            if up.content_length is not None:  # bytes pass undecoded: the length holds
                resp.content_length = up.content_length
            await resp.prepare(request)
            async for data in up.content.iter_any():
                await resp.write(data)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="uvloop when installed"
    )
    args = ap.parse_args()
    app = make_app(args.upstream)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"READY {port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    run_on_loop(serve(), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
