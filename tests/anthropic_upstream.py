"""A local stand-in for Anthropic's Messages API, written from its API reference,
for testing the ``anthropic`` provider: a real aiohttp server on 127.0.0.1 in
its own thread. Nothing in the tests talks to the real service.

What it checks, as the reference describes the service: the key in
``x-api-key`` (or ``Authorization: Bearer``, which the pinned official SDK
sends; 401 ``authentication_error`` when missing or wrong), ``anthropic-version`` (400
without it), a JSON body, ``model`` in its list (404 ``not_found_error``),
``max_tokens`` an integer >= 1 (400 ``invalid_request_error``), ``messages``
with roles ``user``/``assistant`` only, known content block types, every
``tool_result`` answering a ``tool_use`` of the assistant turn just before.
Errors are ``{"type": "error", "error": {"type", "message"}}``.

What it answers is derived from the request, never canned:

- text: the words of the last user turn's text blocks (after a
  ``tool_result``: ``"tool said: "`` and the result's text), one
  ``text_delta`` per word; ``max_tokens`` cuts at that many words
  (``stop_reason: max_tokens``); a ``stop_sequences`` entry found in the text
  cuts before it (``stop_sequence``).
- tool use: when ``tool_choice`` forces a tool (``any`` or ``tool``), or the
  last user text names a tool, the answer is a text block then a
  ``tool_use`` block (``stop_reason: tool_use``) whose input fills each of the
  tool's schema properties from the user's text (strings: the text; numbers:
  its word count; booleans: true), streamed as ``input_json_delta`` pieces.
- tokens: ``input_tokens`` is the number of whitespace-separated words in
  ``system``, every text and tool result, and each tool's name and
  description; ``POST /v1/messages/count_tokens`` answers the same count.
  ``output_tokens`` counts the words sent (and 1 per tool call).

A stream is ``message_start``, then per block ``content_block_start`` (a
``ping`` after the first), its deltas, ``content_block_stop``; then
``message_delta`` (stop reason and usage) and ``message_stop``: every frame
with an ``event:`` line whose name is the data's ``type``.

Scripted failures, by model name (each name must be in ``models``):

=======================  ============================================================
``overloaded[:K]``       529 ``overloaded_error`` (the first K attempts with this
                         exact name; without K, always), then a normal answer
``rate_limited:K:S``     the first K attempts: 429 ``rate_limit_error`` with
                         ``retry-after: S``; then a normal answer
``midstream_error:N``    streamed: N words, then an ``error`` event
                         (``overloaded_error``) and the end of the body
``cut:N``                streamed: N words, then the body ends (no message_stop)
``badshape``             a message whose content block is a string (not an object);
                         streamed: a ``content_block_start`` whose index is text
``pings:SECONDS``        streamed: after the first word, only ``ping`` events every
                         0.1 s for SECONDS, then the rest
=======================  ============================================================

``GET /v1/models`` pages its list Anthropic's way (``limit``, ``after_id``,
``before_id``; ``data``, ``has_more``, ``first_id``, ``last_id``), at most
``page_size`` entries a page.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from anthropic_answers import (
    Plan,
    Refusal,
    check_messages,
    count_input,
    deltas,
    error_body,
    message_body,
    plan_answer,
)

__all__ = ["AnthropicUpstream", "count_input"]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class AnthropicUpstream:
    def __init__(
        self, *, api_key: str = "sk-ant-test-key", models: list[str], page_size: int = 1000
    ) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.page_size = page_size
        self.port = 0
        self.requests: list[Seen] = []
        self._attempts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL as the SDK and ``ANTHROPIC_BASE_URL`` take it (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def attempts(self, model: str) -> int:
        return self._attempts.get(model, 0)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> AnthropicUpstream:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the Anthropic test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    # -- checks ------------------------------------------------------------------------------

    def _check_headers(self, request: web.Request) -> None:
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if key is None and bearer.startswith("Bearer "):
            key = bearer[len("Bearer ") :]  # what the pinned official SDK sends
        if key is None:
            raise Refusal(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            raise Refusal(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            raise Refusal(400, "invalid_request_error", "anthropic-version: header is required")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(Seen(request.path, dict(request.headers), body))
        self._check_headers(request)
        if not isinstance(body, dict):
            raise Refusal(400, "invalid_request_error", "the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str):
            raise Refusal(400, "invalid_request_error", "model: Field required")
        if model not in self.models:
            raise Refusal(404, "not_found_error", f"model: {model}")
        check_messages(body.get("messages"))
        return body

    # -- handlers ----------------------------------------------------------------------------

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
        except Refusal as r:
            return _refuse(r)
        return web.json_response({"input_tokens": count_input(body)})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        try:
            self.requests.append(Seen(request.path, dict(request.headers), dict(request.query)))
            self._check_headers(request)
            limit = int(request.query.get("limit", "20"))
            if not 1 <= limit <= 1000:
                raise ValueError
        except Refusal as r:
            return _refuse(r)
        except ValueError:
            return _refuse(Refusal(400, "invalid_request_error", "limit: from 1 to 1000"))
        ids = self.models
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        elif before in ids:
            ids = ids[: ids.index(before)]
        page = ids[: min(limit, self.page_size)]
        data = [
            {"type": "model", "id": m, "display_name": m.title(),
             "created_at": f"2025-0{1 + i % 9}-01T00:00:00Z"}
            for i, m in enumerate(page)
        ]  # fmt: skip
        return web.json_response({
            "data": data,
            "has_more": len(ids) > len(page),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        })  # fmt: skip

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
            max_tokens = body.get("max_tokens")
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
                raise Refusal(400, "invalid_request_error", "max_tokens: Field required")
            if max_tokens < 1:
                raise Refusal(400, "invalid_request_error", "max_tokens: must be at least 1")
            self._scripted(body["model"])
        except Refusal as r:
            return _refuse(r)
        plan = plan_answer(body)
        if body["model"] == "badshape":
            return await self._bad_shape(request, body, plan)
        if body.get("stream") is True:
            return await self._stream(request, body, plan)
        return web.json_response(message_body(body, plan, plan.blocks))

    async def _bad_shape(
        self, request: web.Request, body: dict[str, Any], plan: Plan
    ) -> web.StreamResponse:
        if body.get("stream") is not True:
            return web.json_response(message_body(body, plan, ["not a block"]))  # type: ignore[list-item]
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        start = {"type": "message_start", "message": message_body(body, plan, [])}
        block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        bad = {"type": "content_block_start", "index": "first", "content_block": block}
        for data in (start, bad):
            await resp.write(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode())
        await resp.write_eof()
        return resp

    def _scripted(self, model: str) -> None:
        kind, _, args = model.partition(":")
        n = self._attempts[model] = self._attempts.get(model, 0) + 1
        parts = args.split(":") if args else []
        if kind == "overloaded" and (not parts or n <= int(parts[0])):
            raise Refusal(529, "overloaded_error", "Overloaded")
        if kind == "rate_limited" and n <= int(parts[0]):
            raise Refusal(429, "rate_limit_error", "rate limited (scripted)",
                          {"retry-after": parts[1]})  # fmt: skip

    async def _stream(
        self, request: web.Request, body: dict[str, Any], plan: Plan
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream",
                                           "cache-control": "no-cache"})  # fmt: skip
        await resp.prepare(request)

        async def send(data: dict[str, Any]) -> None:
            await resp.write(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode())

        start = message_body(body, plan, [])
        start.update(stop_reason=None, stop_sequence=None)
        start["usage"] = {"input_tokens": plan.input_tokens, "output_tokens": 1}
        await send({"type": "message_start", "message": start})
        kind, _, arg = str(body["model"]).partition(":")
        words_left = int(arg) if kind in ("midstream_error", "cut") else None
        if kind == "pings":
            words_left = 1
        for index, block in enumerate(plan.blocks):
            empty = (
                {"type": "text", "text": ""} if block["type"] == "text" else {**block, "input": {}}
            )
            await send({"type": "content_block_start", "index": index, "content_block": empty})
            if index == 0:
                await send({"type": "ping"})
            for delta in deltas(block):
                if words_left is not None:
                    if words_left == 0 and kind == "pings":
                        for _ in range(int(float(arg) * 10)):
                            await send({"type": "ping"})
                            await asyncio.sleep(0.1)
                        words_left = None
                    elif words_left == 0:
                        if kind == "midstream_error":
                            await send(error_body("overloaded_error", "Overloaded (mid-stream)"))
                        await resp.write_eof()
                        return resp
                    else:
                        words_left -= 1
                await send({"type": "content_block_delta", "index": index, "delta": delta})
            await send({"type": "content_block_stop", "index": index})
        await send({"type": "message_delta",
                    "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence},
                    "usage": {"output_tokens": plan.output_tokens}})  # fmt: skip
        await send({"type": "message_stop"})
        await resp.write_eof()
        return resp


def _refuse(r: Refusal) -> web.Response:
    return web.json_response(error_body(r.kind, r.message), status=r.status, headers=r.headers)
