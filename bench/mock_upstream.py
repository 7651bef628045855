"""A fast OpenAI-compatible mock upstream for benchmarks, run as its own process.

It pre-builds each answer once, so what is measured is the client (or gateway)
under test, not this server. ``model`` picks the answer:

* ``chunks:N`` — N content chunks, each its own write, then ``[DONE]``: what an
  LLM server does, token by token (no sleeping: as fast as the socket takes them);
* ``bulk:N`` — the same bytes in writes of 256 events, so that reads arrive full
  and only the client's per-chunk cost is left;
* ``paced:N:MS`` — N chunks, one every MS milliseconds, each as its own write
  (event i is written at start + i×MS, the finish event and ``[DONE]`` included);
* anything else — 10 chunks.

Non-streaming requests get one ``chat.completion``. Content alternates two
tokens: LiteLLM aborts a stream after 100 identical deltas.

Usage: ``python bench/mock_upstream.py --port 0`` prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from functools import lru_cache

from aiohttp import web

from _loop import run_on_loop

TOKENS = ("hello", " world")


def chunk(model: str, i: int, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    if i == 0:
        delta["role"] = "assistant"
    obj = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@lru_cache(maxsize=64)
def events(model: str, n: int) -> list[bytes]:
    out = [chunk(model, i, TOKENS[i % 2]) for i in range(n)]
    out.append(chunk(model, n, None, "stop"))
    out.append(b"data: [DONE]\n\n")
    return out


@lru_cache(maxsize=64)
def completion(model: str, n: int) -> bytes:
    text = "".join(TOKENS[i % 2] for i in range(n))
    obj = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5},
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def parse(model: str) -> tuple[str, int, float]:
    parts = model.split(":")
    try:
        if parts[0] in ("chunks", "bulk"):
            return parts[0], int(parts[1]), 0.0
        if parts[0] == "paced":
            return "paced", int(parts[1]), float(parts[2]) / 1000
    except (IndexError, ValueError):
        pass
    return "chunks", 10, 0.0


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body.get("model", "x"))
    kind, n, pace = parse(model)
    if not body.get("stream"):
        return web.Response(body=completion(model, n), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    evs = events(model, n)
    if kind == "paced":
        # Each event on its own deadline (start + i*pace), so sleep overshoot
        # does not accumulate along the stream.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, ev in enumerate(evs):
            delay = start + i * pace - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(ev)
    else:
        step = 256 if kind == "bulk" else 1
        for i in range(0, len(evs), step):
            await resp.write(b"".join(evs[i : i + step]))
    await resp.write_eof()
    return resp


def models_handler(names: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    data = {
        "object": "list",
        "data": [{"id": n, "object": "model", "owned_by": "bench"} for n in names],
    }

    async def models(_: web.Request) -> web.Response:
        return web.json_response(data)

    return models


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--models",
        default="x",
        help="comma-separated names GET /v1/models lists (a gateway that checks model "
        "names needs e.g. x,chunks:10,paced:20:50); every name is answered either way",
    )
    ap.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="uvloop when installed"
    )
    args = ap.parse_args()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models_handler(args.models.split(",")))

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"READY {port}", flush=True)
        await asyncio.Event().wait()

    run_on_loop(serve(), args.loop)


if __name__ == "__main__":
    sys.exit(main())
