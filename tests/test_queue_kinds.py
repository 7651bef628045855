"""A queue that shows, for every kind of chat request: ``ails serve`` with the
real embedded model on two slots, both held by long answers, while a request
with tools, with ``n`` = 2, or with a JSON schema waits for one.

Such a request is counted (its tools rendered by the template, as for a plain
one: tests/test_tokenizer.py checks the count against the runtime's), then
tells its wait like a plain one: ``: queued ahead=N`` before its first chunk,
``x-ails-queue-ms`` when not streamed. With
``n`` = 2 the place told is its first choice's, once: never its second
choice's, which waits behind it. Nothing here is timed: each step waits for
what the one before produced.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from gateway_proc import Gateway
from sse_lines import lines_until

pytestmark = pytest.mark.local

LONG = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
KINDS: dict[str, dict[str, Any]] = {
    "tools required": {"tools": [WEATHER], "tool_choice": "required"},
    "tools named": {"tools": [WEATHER], "tool_choice": NAMED},
    "tools auto": {"tools": [WEATHER], "tool_choice": "auto"},
    "json_schema": {"response_format": SCHEMA},
    "n=2": {"n": 2},
}


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with Gateway(["--max-queue", "4"], env={"AILS_LOCAL_PARALLEL": "2"}, start_timeout=180) as g:
        yield g


async def _hold(session: aiohttp.ClientSession, gw: Gateway) -> aiohttp.ClientResponse:
    """A stream whose first token has arrived: one slot busy until it is closed."""
    body = {"model": "default", "messages": LONG, "stream": True, "max_tokens": 300}
    body.update(temperature=0, seed=1)
    resp = await session.post(f"{gw.base_url}/chat/completions", json=body)
    assert resp.status == 200
    await lines_until(resp, '"content":"')
    return resp


@asynccontextmanager
async def holding(
    session: aiohttp.ClientSession, gw: Gateway, slots: int
) -> AsyncIterator[list[aiohttp.ClientResponse]]:
    async with AsyncExitStack() as stack:
        holders = []
        for _ in range(slots):
            resp = await _hold(session, gw)
            stack.callback(resp.close)
            holders.append(resp)
        yield holders


def request(kind: str, *, stream: bool) -> dict[str, Any]:
    body = {"model": "default", "messages": ASK, "max_tokens": 40, "temperature": 0}
    return {**body, **KINDS[kind], "stream": stream}


def chunks(lines: list[str]) -> list[dict[str, Any]]:
    data = [line[6:] for line in lines if line.startswith("data: ")]
    return [json.loads(d) for d in data if d != "[DONE]"]


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_queued_stream_of_each_kind_says_so_before_its_first_chunk(
    gw: Gateway, kind: str
) -> None:
    async with aiohttp.ClientSession() as session:
        async with holding(session, gw, 2):
            waiting = await session.post(
                f"{gw.base_url}/chat/completions", json=request(kind, stream=True)
            )
            assert waiting.status == 200
            before = await lines_until(waiting, ": queued ahead=2")
            assert not any(line.startswith("data: ") for line in before)
        # Both slots free: the answer comes, after its comments.
        text = (await waiting.read()).decode()
        waiting.close()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    notes = [line for line in lines if line.startswith(":")]
    # Told once, from the first choice's place: never the second choice's (3),
    # never after the first chunk.
    assert set(notes) <= {": queued ahead=2", ": queued ahead=1", ": queued ahead=0"}
    assert all(not line.startswith(":") for line in lines[first:])
    answer = chunks(lines)
    if kind.startswith("tools") and kind != "tools auto":
        calls = [
            c for a in answer for ch in a["choices"] for c in ch["delta"].get("tool_calls", [])
        ]
        assert calls and calls[0]["function"]["name"] == "get_weather"
    if kind == "json_schema":
        content = "".join(ch["delta"].get("content") or "" for a in answer for ch in a["choices"])
        assert isinstance(json.loads(content)["city"], str)
    if kind == "n=2":
        assert {ch["index"] for a in answer for ch in a["choices"]} == {0, 1}


async def test_n_2_with_one_slot_free_starts_at_once_and_says_nothing(gw: Gateway) -> None:
    """Its second choice waits for the slot its first answers in, but the
    answer has begun: no comment, neither before nor among its chunks."""
    async with aiohttp.ClientSession() as session, holding(session, gw, 1):
        resp = await session.post(
            f"{gw.base_url}/chat/completions", json=request("n=2", stream=True)
        )
        assert resp.status == 200
        text = (await resp.read()).decode()
    assert "queued" not in text
    answer = chunks(text.splitlines())
    assert {ch["index"] for a in answer for ch in a["choices"]} == {0, 1}


async def test_a_non_streamed_tools_answer_carries_its_wait(gw: Gateway) -> None:
    url = f"{gw.base_url}/chat/completions"
    body = request("tools required", stream=False)
    async with aiohttp.ClientSession() as session:
        async with holding(session, gw, 2) as holders:
            waiting = asyncio.ensure_future(session.post(url, json=body))
            # Ten more tokens of a held answer: time enough for the request to
            # reach the line, however busy the machine (no slot frees meanwhile).
            tokens = 0
            while tokens < 10:
                line = await holders[0].content.readline()
                assert line, "the held answer ended early"
                tokens += line.startswith(b"data: ")
        resp = await waiting
        assert resp.status == 200
        assert int(resp.headers["x-ails-queue-ms"]) > 0
        message = (await resp.json())["choices"][0]["message"]
        assert message["tool_calls"][0]["function"]["name"] == "get_weather"
