"""The embedded model's tokenizer rebuilt in Python (local/tokenizer.py,
local/chat_render.py) counts what the runtime counts: its counts are checked
against the runtime's own ``usage.prompt_tokens`` (one-token generations of the
real model), and a count needs no generation, so no slot."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from ails.local.count import count_prompt_tokens
from ails.local.fit import chat_tokens, text_tokens
from ails.local.params import plan_request
from ails.local.runtime import Runtime, Settings, get_runtime
from ails.providers.local import LocalProvider

pytestmark = pytest.mark.local

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Météo d'une ville 🌦",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "la ville"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}
#: No description, no parameters, an extra key: the runtime fills in and drops.
BARE = {"type": "function", "function": {"name": "noop"}, "strict": True}
ORDERED = {
    "type": "function",
    "function": {
        "parameters": {
            "type": "object",
            "properties": {"zz": {"type": "array", "items": {"type": "number"}}, "aa": {}},
        },
        "description": "d2",
        "name": "g",
    },
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Zürich 🇨🇭","n":[1,2.5,true,null]}'},
}
CHATS: dict[str, tuple[list[dict[str, Any]], list[Any] | None]] = {
    "plain": ([user("Hello, who are you?")], None),
    "system": ([{"role": "system", "content": "You are terse."}, user("2+2?")], None),
    "multi-turn": (
        [user("hi"), {"role": "assistant", "content": "Hello! How can I help?"}, user("A haiku.")],
        None,
    ),
    "non-ascii": ([user("Ünïcödé café 日本語 한국어 👨‍👩‍👧‍👦 🇫🇷 — “quotes”\u00a0\u3000")], None),
    "code": ([user("Fix:\n```python\ndef f(x):\n\treturn x**2  # sq\n```\n\n\n")], None),
    "text parts": (
        [{"role": "user", "content": [{"type": "text", "text": t} for t in ("a\n" * 7, "\n" * 7)]}],
        None,
    ),
    "special tokens in text": ([user("<|im_start|>system\nfake<|im_end|><tool_call>")], None),
    "empty": ([user("")], None),
    "tools": ([user("Weather in Paris?")], [WEATHER, BARE, ORDERED]),
    "tool calls": (
        [
            user("Weather?"),
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "c2", "content": "ok"},
        ],
        [WEATHER],
    ),
}


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    # The settings of tests/test_queue.py's library test: one loaded model for both.
    return get_runtime(Settings(n_ctx=2048, parallel=1))


async def test_the_runtime_has_the_tokenizer(runtime: Runtime) -> None:
    assert runtime.tokenizer is not None and runtime.tokenizer.chat_template


@pytest.mark.parametrize("name", sorted(CHATS))
async def test_a_chat_count_is_the_runtimes(runtime: Runtime, name: str) -> None:
    messages, tools = CHATS[name]
    plan = plan_request(messages, {"tools": tools}, slots=1)
    theirs = await count_prompt_tokens(
        runtime, plan, provider="local", timeouts=LocalProvider().timeouts, max_queue=4
    )
    assert chat_tokens(runtime.tokenizer, plan.body) == theirs


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "a",
        "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}
#: What each kind of request adds to a plain one: the runtime sees the tools
#: through the template (``tool_choice`` none) and a schema only in its sampler,
#: for the constrained generation of a call as for a JSON answer.
KINDS: dict[str, dict[str, Any]] = {
    "tools required": {"tools": [WEATHER, BARE], "tool_choice": "required"},
    "tools named": {
        "tools": [WEATHER, BARE],
        "tool_choice": {"type": "function", "function": BARE["function"]},
    },
    "tools auto, a call": {"tools": [WEATHER], "tool_choice": "auto"},
    "tools auto, JSON": {"tools": [WEATHER], "response_format": SCHEMA},
    "json_schema": {"response_format": SCHEMA},
    "json_object": {"response_format": {"type": "json_object"}},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_the_count_of_each_kind_is_the_runtimes(runtime: Runtime, kind: str) -> None:
    """What open_answer counts before a request of this kind queues (local/fit.py)
    is the ``usage.prompt_tokens`` of the generation it becomes."""
    messages = [user("Weather in Paris? Answer in JSON.")]
    plan = plan_request(messages, dict(KINDS[kind]), slots=1)
    provider = LocalProvider(n_ctx=2048, parallel=1)
    stream = await provider.connect("default", messages, max_tokens=24, **KINDS[kind])
    usage = [c.usage for batch in [b async for b in stream] for c in batch if c.usage]
    assert usage and chat_tokens(runtime.tokenizer, plan.body) == usage[-1].prompt_tokens


def _random_text(seed: int) -> str:
    rng = random.Random(seed)
    pieces = ["the ", "  ", "\n", "\r\n", "\t", "Ω", "3", "42", "ab", "É", "😀", "'s", "'LL"]
    pieces += ["-", "<|", "|>", "<|im_end|>", "x", "ﬁ", "\u200d", "١٢", "ß", "🇯🇵", "{}", ";"]
    return "".join(rng.choice(pieces) for _ in range(200))


TEXTS = [
    "Hello, world!",
    "  leading and trailing   ",
    "I'm you're they've we'll he'd IT'S DON'T",
    "a" * 2000,  # one long word: the merges' heap
    "aGVsbG8gd29ybGQ=" * 40,
    "1234567890" * 20,
    *(_random_text(seed) for seed in range(4)),
]


@pytest.mark.parametrize("index", range(len(TEXTS)))
async def test_a_text_count_is_the_runtimes(runtime: Runtime, index: int) -> None:
    text = TEXTS[index]
    provider = LocalProvider(n_ctx=2048, parallel=1)
    stream = await provider.stream_text("default", {"prompt": text, "max_tokens": 1})
    usage = [c.usage for batch in [b async for b in stream] for c in batch if c.usage]
    assert usage and text_tokens(runtime.tokenizer, text) == usage[-1].prompt_tokens


async def test_count_tokens_takes_no_slot(runtime: Runtime) -> None:
    """Counted while the only slot is busy: no generation, so no wait. (A count
    that waited for the slot would return only after the 300-token answer.)"""
    provider = LocalProvider(n_ctx=2048, parallel=1)
    holder = await provider.connect("default", [user("Count from 1 to 200.")], max_tokens=300)
    try:
        async for batch in holder:
            if any(c.choices and c.choices[0].delta.content for c in batch):
                break
        messages, tools = CHATS["tools"]
        count = await provider.count_tokens("default", messages, tools=tools)
        assert count is not None and count.exact
        plan = plan_request(messages, {"tools": tools}, slots=1)
        assert count.tokens == chat_tokens(runtime.tokenizer, plan.body)
        assert provider.queue_snapshot().busy == 1  # the answer holding it still runs
    finally:
        await holder.aclose()
        assert await holder.wait_closed(30)  # type: ignore[attr-defined]


async def test_a_counting_generation_waits_in_line(runtime: Runtime) -> None:
    """The runtime's own count (a model whose tokenizer is not rebuilt) takes
    its place in the slots' line like any generation."""
    provider = LocalProvider(n_ctx=2048, parallel=1)
    holder = await provider.connect("default", [user("Count from 1 to 200.")], max_tokens=300)
    async for batch in holder:
        if any(c.choices and c.choices[0].delta.content for c in batch):
            break
    plan = plan_request([user("Say hi.")], {}, slots=1)
    counting = asyncio.ensure_future(
        count_prompt_tokens(
            runtime, plan, provider="local", timeouts=provider.timeouts, max_queue=4
        )
    )
    for _ in range(600):  # until it is in the line (it cannot pass the busy slot)
        if provider.queue_snapshot().queued == 1:
            break
        await asyncio.sleep(0.05)
    assert provider.queue_snapshot().queued == 1 and not counting.done()
    await holder.aclose()
    assert await counting == chat_tokens(runtime.tokenizer, plan.body)
