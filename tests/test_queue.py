"""A queue that shows: ``ails serve`` with the real embedded model on one slot.

One request holds the slot (its first token has arrived, and it has many
left); the next one waits for it, and says so: ``: queued ahead=N`` comments
before its first token in every dialect's stream, ``x-ails-queue-ms`` on a
non-streamed answer, 503 ``queue_full`` with ``retry-after`` (529 on
``/v1/messages``) past ``--max-queue``, and the CLI's spinner says so too.
Nothing here is timed: each step waits for what the one before produced.
The last test uses the library: ``tool_choice: "auto"``'s call keeps its slot
before a full line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pexpect
import pytest

from ails.local.slots import QueueSnapshot
from ails.providers.base import ChunkStream, QueueWait
from ails.providers.local import LocalProvider
from ails.types import Chunk
from cli_helpers import AILS, clean_env
from gateway_proc import Gateway
from sse_lines import lines_until

pytestmark = pytest.mark.local

#: A prompt with a long answer: the slot stays busy while the test works.
LONG = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
SHORT = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with Gateway(["--max-queue", "1"], env={"AILS_LOCAL_PARALLEL": "1"}, start_timeout=180) as g:
        yield g


@asynccontextmanager
async def holding_the_slot(
    session: aiohttp.ClientSession, gw: Gateway
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A stream whose first token has arrived: the one slot is busy until it
    is closed (the gateway then stops its generation at once)."""
    # Greedy: the count goes on for the whole max_tokens, never stopping early.
    body = {"model": "default", "messages": LONG, "stream": True, "max_tokens": 300}
    body.update(temperature=0, seed=1)
    resp = await session.post(f"{gw.base_url}/chat/completions", json=body)
    assert resp.status == 200
    while True:
        line = (await resp.content.readline()).decode()
        assert line, "the first stream ended before its first token"
        if line.startswith("data: ") and '"content":"' in line:
            break
    try:
        yield resp
    finally:
        resp.close()


DIALECTS = {
    "chat": (
        "/chat/completions",
        {"model": "default", "messages": SHORT, "stream": True, "max_tokens": 4},
        '"content":"',
    ),
    "messages": (
        "/messages",
        {"model": "default", "messages": SHORT, "stream": True, "max_tokens": 4},
        "content_block_delta",
    ),
    "responses": (
        "/responses",
        {"model": "default", "input": "Say hi.", "stream": True, "max_output_tokens": 16},
        "response.output_text.delta",
    ),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_queued_stream_says_so_before_its_first_token(gw: Gateway, dialect: str) -> None:
    path, body, first_token = DIALECTS[dialect]
    async with aiohttp.ClientSession() as session:
        async with holding_the_slot(session, gw):
            waiting = await session.post(gw.base_url + path, json=body)
            assert waiting.status == 200
            before = await lines_until(waiting, "queued ahead=")
            assert not any(first_token in line for line in before)
        # The slot is free: the waiting answer comes, after its comment.
        rest = await lines_until(waiting, first_token)
        assert not any("queued ahead=" in line and line != ": queued ahead=0" for line in rest)
        await waiting.read()
        waiting.close()


async def test_a_stream_that_did_not_wait_has_no_comment(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        path, body, first_token = DIALECTS["chat"]
        resp = await session.post(gw.base_url + path, json=body)
        text = (await resp.read()).decode()
        assert first_token in text and "queued" not in text


async def test_a_non_streamed_answer_carries_its_wait(gw: Gateway) -> None:
    body = {"model": "default", "messages": SHORT, "max_tokens": 4}
    url = f"{gw.base_url}/chat/completions"
    async with aiohttp.ClientSession() as session:
        alone = await session.post(url, json=body)
        assert alone.status == 200 and alone.headers["x-ails-queue-ms"] == "0"
        async with holding_the_slot(session, gw) as holder:
            waiting = asyncio.ensure_future(session.post(url, json=body))
            # Ten more tokens of the first answer: time enough for the request
            # to reach the line, however busy the machine (no slot frees meanwhile).
            tokens = 0
            while tokens < 10:
                line = await holder.content.readline()
                assert line, "the first answer ended early"
                tokens += line.startswith(b"data: ")
        resp = await waiting
        assert resp.status == 200
        assert int(resp.headers["x-ails-queue-ms"]) > 0
        answer = await resp.json()
        assert answer["choices"][0]["message"]["content"]


async def test_past_max_queue_a_503_with_retry_after(gw: Gateway) -> None:
    path, body, _ = DIALECTS["chat"]
    async with aiohttp.ClientSession() as session, holding_the_slot(session, gw):
        waiting = await session.post(gw.base_url + path, json=body)
        await lines_until(waiting, "queued ahead=1")  # the line (of 1) is full
        refused = await session.post(gw.base_url + path, json=body)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        error = (await refused.json())["error"]
        assert error["code"] == "queue_full" and error["type"] == "server_error"
        m_path, m_body, _ = DIALECTS["messages"]
        anthropic = await session.post(gw.base_url + m_path, json=m_body)
        assert anthropic.status == 529
        assert anthropic.headers["retry-after"] == "1"
        assert (await anthropic.json())["error"]["type"] == "overloaded_error"
        waiting.close()


async def test_the_cli_spinner_shows_the_wait(gw: Gateway, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home", gw.base_url)
    async with aiohttp.ClientSession() as session:
        async with holding_the_slot(session, gw):
            child = pexpect.spawn(
                AILS,
                ["-m", "openai/default", "-o", "max_tokens=4", "Say hi."],
                env=env,
                encoding="utf-8",
                timeout=60,
                dimensions=(40, 200),
            )
            await asyncio.to_thread(child.expect, r"waiting for the model \(1 ahead\)")
        await asyncio.to_thread(child.expect, pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        assert child.before.strip(), "no answer after the wait"


#: Over 4 KB of text (beyond the old bytes bound) but ~1,100 tokens, well within
#: the gateway's 4096-token context.
LONG_PROMPT = "Summarise in one word: " + "The quick brown fox jumps over the lazy dog. " * 100


async def test_a_long_prompt_that_fits_says_it_waits(gw: Gateway) -> None:
    """Counted before it queues (local/fit.py), so a long prompt is announced too."""
    assert len(LONG_PROMPT.encode()) > 4096
    body = {"model": "default", "messages": [{"role": "user", "content": LONG_PROMPT}]}
    body.update(stream=True, max_tokens=2)
    async with aiohttp.ClientSession() as session:
        async with holding_the_slot(session, gw):
            waiting = await session.post(f"{gw.base_url}/chat/completions", json=body)
            assert waiting.status == 200
            before = await lines_until(waiting, "queued ahead=1")
            assert not any(line.startswith("data: ") for line in before)
        await lines_until(waiting, '"content":"')  # the answer, after the wait
        await waiting.read()
        waiting.close()


async def test_a_long_text_completion_says_it_waits(gw: Gateway) -> None:
    body = {"model": "default", "prompt": LONG_PROMPT, "stream": True, "max_tokens": 2}
    async with aiohttp.ClientSession() as session:
        async with holding_the_slot(session, gw):
            waiting = await session.post(f"{gw.base_url}/completions", json=body)
            assert waiting.status == 200
            before = await lines_until(waiting, "queued ahead=1")
            assert not any(line.startswith("data: ") for line in before)
        await lines_until(waiting, '"text":')
        await waiting.read()
        waiting.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"messages": [{"role": "user", "content": "word " * 5000}]}),
        ("/completions", {"prompt": "word " * 5000}),
    ],
)
async def test_a_prompt_over_the_context_is_a_400_without_waiting(
    gw: Gateway, path: str, body: dict[str, object]
) -> None:
    """Counted before it queues: refused while the slot is still busy, before
    any byte of an answer, with the runtime's own error."""
    body = {**body, "model": "default", "stream": True, "max_tokens": 4}
    async with aiohttp.ClientSession() as session, holding_the_slot(session, gw) as holder:
        resp = await session.post(gw.base_url + path, json=body)
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "context_length_exceeded"
        assert "maximum context length is 4096 tokens" in error["message"]
        # The slot was busy all along: the answer holding it is still going.
        line = b"\n"
        while line == b"\n":
            line = await holder.content.readline()
        assert line.startswith(b"data: ") and b"[DONE]" not in line


# -- the library: LocalProvider on one slot, in this process ------------------------------------


async def test_the_library_sees_its_place_and_can_leave_the_line() -> None:
    from ails.local.slots import QueueFull, QueueSnapshot
    from ails.providers.base import QueueWait
    from ails.providers.local import LocalProvider

    # 2048: room for the template's margin (local/slots.py), so the wait is announced.
    provider = LocalProvider(n_ctx=2048, parallel=1, max_queue=1)
    await provider.load()
    first = await provider.connect("default", LONG, max_tokens=300, temperature=0)
    async for batch in first:  # its first token: the slot is busy
        if any(c.choices and c.choices[0].delta.content for c in batch):
            break
    second = await provider.connect("default", SHORT, max_tokens=4)
    note = await second.__anext__()
    assert isinstance(note, QueueWait) and note.ahead == 1 and not note.started
    assert provider.queue_snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    with pytest.raises(QueueFull):
        await provider.connect("default", SHORT, max_tokens=4)
    await second.aclose()  # leaves the line at once
    assert provider.queue_snapshot() == QueueSnapshot(busy=1, slots=1, queued=0)
    third = await provider.connect("default", SHORT, max_tokens=4)
    assert (await third.__anext__()).ahead == 1  # type: ignore[attr-defined]
    await first.aclose()
    batches = [batch async for batch in third]
    assert isinstance(batches[0], QueueWait) and batches[0].started
    assert batches[0].waited is not None and batches[0].waited > 0
    assert any(c.choices and c.choices[0].delta.content for b in batches for c in b)
    assert await third.wait_closed(10)  # type: ignore[attr-defined]
    assert provider.queue_snapshot() == QueueSnapshot(busy=0, slots=1, queued=0)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}},
            "required": ["city"],
        },
    },
}


async def test_auto_s_call_keeps_its_slot_before_a_full_line() -> None:
    """One slot, ``max_queue`` 1: a request with ``tool_choice: "auto"`` has
    the slot, another fills the line, then the model starts a call. Its
    constrained generation takes the slot the free one gives back (a 503
    ``queue_full`` before the fix, the line being full), and the one waiting
    is served after it. In the library, so the call starts when the test
    reads the answer, with the other request surely in line."""
    provider = LocalProvider(n_ctx=1024, parallel=1, max_queue=1)
    ask = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    tools = await provider.connect(
        "default", ask, tools=[WEATHER], tool_choice="auto", temperature=0, seed=1, max_tokens=60
    )
    waiting = await provider.connect("default", SHORT, max_tokens=4)
    assert provider.queue_snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    order: list[str] = []

    async def read(stream: ChunkStream, name: str) -> list[list[Chunk]]:
        batches = []
        async for batch in stream:
            if any(c.choices for c in batch) and name not in order:
                order.append(name)  # its first chunk of the answer
            batches.append(batch)
        return batches

    called, answered = await asyncio.gather(read(tools, "call"), read(waiting, "answer"))
    deltas = [d for b in called for c in b for ch in c.choices for d in ch.delta.tool_calls or []]
    assert deltas and deltas[0]["function"]["name"] == "get_weather"
    assert [c.choices[0].finish_reason for b in called for c in b if c.choices][-1] == "tool_calls"
    # The call waited for its own free generation only, not for the one in line.
    assert [w.ahead for w in called if isinstance(w, QueueWait) and not w.started] == [1]
    assert order == ["call", "answer"]
    assert "".join(c.choices[0].delta.content or "" for b in answered for c in b if c.choices)
    assert provider.queue_snapshot() == QueueSnapshot(busy=0, slots=1, queued=0)
