"""A whole answer is checked without decoding it (providers/_http.py's probe):
``choices`` and ``data`` must be JSON arrays, an in-band error is raised, and
the bytes reach the caller as the upstream sent them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from ails.errors import AilsError, ProtocolError
from ails.providers.openai import OpenAIProvider

HELLO = [{"role": "user", "content": "hi"}]
COMPLETION = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"yes"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


@asynccontextmanager
async def upstream(answer: bytes) -> AsyncIterator[OpenAIProvider]:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_post("/v1/embeddings", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
    try:
        yield provider
    finally:
        await provider.aclose()
        await runner.cleanup()


def run(answer: bytes, call: Callable[[OpenAIProvider], Awaitable[object]]) -> object:
    async def main() -> object:
        async with upstream(answer) as provider:
            return await call(provider)

    return asyncio.run(main())


def test_a_completion_passes_as_sent_and_decodes_on_demand() -> None:
    async def call(provider: OpenAIProvider) -> object:
        reply = await provider.reply("m", HELLO, temperature=None, stream_options=None)
        assert reply.raw == COMPLETION
        # Read by the probe on its way (a gateway counts it without a second decode).
        assert reply.usage is not None and reply.usage.total_tokens == 2
        return reply.completion.choices[0].message.content

    assert run(COMPLETION, call) == "yes"


@pytest.mark.parametrize(
    "answer",
    [b'{"object":"chat.completion"}', b'{"choices":"yes"}', b'{"choices":null}', b'{"choices":{}}'],
)
def test_choices_that_are_not_an_array_are_refused(answer: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        run(answer, lambda p: p.reply("m", HELLO))
    assert info.value.code == "invalid_completion"
    assert "no 'choices'" in str(info.value)


def test_broken_json_inside_choices_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        run(b'{"choices":[{"index":0,]}', lambda p: p.reply("m", HELLO))
    assert info.value.code == "invalid_completion"


def test_an_in_band_error_is_raised() -> None:
    answer = b'{"error":{"message":"model overloaded","code":"overloaded"},"choices":[]}'
    with pytest.raises(AilsError, match="model overloaded"):
        run(answer, lambda p: p.reply("m", HELLO))


def test_embeddings_need_a_data_array() -> None:
    good = b'{"object":"list","data":[{"embedding":[0.5,1.5],"index":0}]}'
    assert run(good, lambda p: p.embed("e", {"input": "x"})) == good
    with pytest.raises(ProtocolError) as info:
        run(b'{"object":"list","data":"none"}', lambda p: p.embed("e", {"input": "x"}))
    assert info.value.code == "invalid_embeddings"


@pytest.mark.parametrize("usage", [b"null", b'"many"', b'{"prompt_tokens":"one"}'])
def test_a_usage_that_is_not_one_is_none_and_the_answer_passes(usage: bytes) -> None:
    answer = b'{"choices":[],"usage":' + usage + b"}"

    async def call(provider: OpenAIProvider) -> object:
        reply = await provider.reply("m", HELLO)
        assert reply.raw == answer
        return reply.usage

    assert run(answer, call) is None
