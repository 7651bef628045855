"""The line in front of the embedded model's slots (local/slots.py), the
``: queued ahead=N`` comment (ails.wire), and the openai provider passing the
comment up as a ``QueueWait`` batch, against a small real upstream that sends
it. No model here: the gate is plain bookkeeping, checked step by step, and
``auto``'s hand-over of its slot to its call runs real generations (threads,
gate, streams) over a scripted runtime."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web

from ails.local.answer import open_answer
from ails.local.choices import MergedChoices
from ails.local.params import plan_request
from ails.local.runtime import Runtime
from ails.local.slots import QueueFull, QueueSnapshot, SlotGate, certainly_fits
from ails.providers import registry
from ails.providers.base import ChunkStream, QueueWait, Timeouts
from ails.sse import SSEDecoder
from ails.types import Chunk, ChunkChoice, Delta
from ails.wire import queue_ahead, queue_comment


class FakeWaiter:
    """Records what the gate tells it; ``wants`` False declines its slot."""

    def __init__(self, name: str, wants: bool = True) -> None:
        self.name = name
        self.wants = wants
        self.places: list[int] = []
        self.offered = 0

    def take_slot(self) -> bool:
        self.offered += 1
        return self.wants

    def moved(self, ahead: int) -> None:
        self.places.append(ahead)


def test_the_line_counts_those_answered_and_those_before() -> None:
    gate = SlotGate(1)
    a, b, c = FakeWaiter("a"), FakeWaiter("b"), FakeWaiter("c")
    assert gate.enter(a, max_queue=5, provider="local") is None  # a free slot
    assert a.offered == 0  # the caller starts it itself
    assert gate.enter(b, max_queue=5, provider="local") == 1  # a is ahead
    assert gate.enter(c, max_queue=5, provider="local") == 2
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=2)
    gate.release()  # a leaves the runtime: b takes the slot, c moves up
    assert b.offered == 1 and c.places == [1]
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    gate.release()
    gate.release()
    assert gate.snapshot() == QueueSnapshot(busy=0, slots=1, queued=0)


def test_past_max_queue_queue_full_and_nothing_changes() -> None:
    gate = SlotGate(1)
    gate.enter(FakeWaiter("a"), max_queue=1, provider="local")
    gate.enter(FakeWaiter("b"), max_queue=1, provider="local")
    with pytest.raises(QueueFull) as info:
        gate.enter(FakeWaiter("c"), max_queue=1, provider="local")
    err = info.value
    assert (err.status, err.code, err.retry_after, err.retryable) == (503, "queue_full", 1.0, False)
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    # max_queue 0: a free slot still serves, but nobody waits.
    zero = SlotGate(1)
    assert zero.enter(FakeWaiter("x"), max_queue=0, provider="local") is None
    with pytest.raises(QueueFull):
        zero.enter(FakeWaiter("y"), max_queue=0, provider="local")


def test_leaving_the_line_moves_those_behind_and_a_declined_slot_passes_on() -> None:
    gate = SlotGate(2)
    gate.enter(FakeWaiter("a"), max_queue=9, provider="local")
    gate.enter(FakeWaiter("b"), max_queue=9, provider="local")
    gone, c, d = FakeWaiter("gone", wants=False), FakeWaiter("c"), FakeWaiter("d")
    assert gate.enter(gone, max_queue=9, provider="local") == 2
    assert gate.enter(c, max_queue=9, provider="local") == 3
    assert gate.enter(d, max_queue=9, provider="local") == 4
    assert gate.withdraw(c) and d.places == [3]
    assert not gate.withdraw(c)  # not in the line any more
    gate.release()  # offered to "gone", who declines: d gets it
    assert gone.offered == 1 and d.offered == 1
    assert gate.snapshot() == QueueSnapshot(busy=2, slots=2, queued=0)


def test_the_comment_round_trips_and_nothing_else_parses() -> None:
    assert queue_comment(3) == b": queued ahead=3\n\n"
    decoder = SSEDecoder(keep_comments=True)
    assert decoder.feed(queue_comment(3) + b": keep-alive\n\n") == []
    assert decoder.comments is not None
    assert [queue_ahead(c) for c in decoder.comments] == [3, None]
    for other in (" queued ahead=", " queued ahead=-1", " queued ahead=1x", " queued ahead=١"):
        assert queue_ahead(other) is None
    assert SSEDecoder().comments is None  # not kept unless asked


def test_a_prompt_that_certainly_fits() -> None:
    assert certainly_fits(b"x" * 100, 4096)
    assert not certainly_fits(b"x" * 4000, 4096)


CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
)


@pytest.fixture
async def queued_upstream() -> AsyncIterator[str]:
    """Says ``: queued ahead=2`` then ``=1``, 1.2 s apart, then answers: the
    client's idle timeout (2 s) is shorter than the whole wait, longer than a gap."""

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for ahead in (2, 1):
            await resp.write(queue_comment(ahead))
            await asyncio.sleep(1.2)
        await resp.write(CHUNK + b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def test_the_openai_provider_passes_the_wait_up(queued_upstream: str) -> None:
    provider = registry.build(
        "openai",
        {"base_url": queued_upstream, "api_key": "x"},
        timeouts=Timeouts(connect=5, idle=2.0, total=30),
    )
    try:
        stream = await provider.connect("m", [{"role": "user", "content": "hi"}])
        batches = [batch async for batch in stream]
    finally:
        await provider.aclose()
    waits = [b for b in batches if isinstance(b, QueueWait)]
    assert [w.ahead for w in waits] == [2, 1]
    assert all(len(w) == 0 for w in waits)  # no chunks: readers of chunks see nothing
    chunks = [c for b in batches for c in b]
    assert [c.choices[0].delta.content for c in chunks] == ["hi"]


class Scripted(ChunkStream):
    """Yields its batches in order, each after ``delay`` event-loop turns."""

    def __init__(self, batches: list[list[Chunk]], delay: int = 1) -> None:
        self.batches = list(batches)
        self.delay = delay

    async def __anext__(self) -> list[Chunk]:
        for _ in range(self.delay):
            await asyncio.sleep(0)
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)

    async def aclose(self) -> None:
        self.batches = []


def _chunk(text: str) -> list[Chunk]:
    return [Chunk(id="c1", choices=[ChunkChoice(delta=Delta(content=text))])]


async def test_n_choices_tell_the_first_choices_wait_once_before_any_chunk() -> None:
    """Choice 0 is first in line: its places are the answer's; choice 1's
    (one more ahead: choice 0) never show, nor any wait after a chunk."""
    first = Scripted([QueueWait(2, 0.1), QueueWait(1, 0.2), QueueWait(0, 0.3, started=True)])
    first.batches += [_chunk("a"), QueueWait(5, 0.0), _chunk("b")]  # a wait after chunks
    second = Scripted([QueueWait(3, 0.1), QueueWait(2, 0.2), QueueWait(1, 0.3)], delay=2)
    second.batches += [QueueWait(0, 0.4, started=True), _chunk("x")]
    out = [batch async for batch in MergedChoices([first, second])]
    waits = [(b.ahead, b.started) for b in out if isinstance(b, QueueWait)]
    assert waits == [(2, False), (1, False), (0, True)]
    first_chunk = next(i for i, b in enumerate(out) if not isinstance(b, QueueWait))
    assert all(not isinstance(b, QueueWait) for b in out[first_chunk:])
    texts = sorted(c.choices[0].delta.content or "" for b in out for c in b if c.choices)
    assert texts == ["a", "b", "x"]
    assert MergedChoices([Scripted([])]).queue_seconds == 0.0


def test_a_follow_up_goes_first_and_is_never_refused() -> None:
    """``first=True``: the second generation of a request already answered
    (``auto``'s call) is placed before every request that waits, after the
    follow-ups only, and not counted against ``max_queue``."""
    gate = SlotGate(1)
    free, b = FakeWaiter("free"), FakeWaiter("b")
    assert gate.enter(free, max_queue=1, provider="local") is None
    assert gate.enter(b, max_queue=1, provider="local") == 1  # the line is full now
    call = FakeWaiter("call")
    assert gate.enter(call, max_queue=1, provider="local", first=True) == 1  # only free ahead
    assert b.places == [2]  # moved back by one: the call is before it
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=2)
    with pytest.raises(QueueFull):  # the follow-up takes no place of the line's limit
        gate.enter(FakeWaiter("c"), max_queue=1, provider="local")
    second = FakeWaiter("second")  # another request's follow-up: behind the first one
    assert gate.enter(second, max_queue=1, provider="local", first=True) == 2
    assert b.places == [2, 3]
    assert gate.withdraw(second) and b.places == [2, 3, 2]
    gate.release()  # the free generation stopped: its slot goes to the call
    assert (call.offered, b.offered) == (1, 0) and b.places[-1] == 1
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    assert gate.enter(FakeWaiter("d"), max_queue=2, provider="local") == 2  # counts b only
    gate.release()
    assert b.offered == 1
    # A free slot is taken at once, the line notwithstanding.
    idle = SlotGate(2)
    idle.enter(FakeWaiter("x"), max_queue=1, provider="local")
    assert idle.enter(FakeWaiter("y"), max_queue=1, provider="local", first=True) is None


def test_a_follow_up_that_leaves_the_line_gives_its_turn_on() -> None:
    gate = SlotGate(1)
    gate.enter(FakeWaiter("free"), max_queue=1, provider="local")
    b = FakeWaiter("b")
    gate.enter(b, max_queue=1, provider="local")
    gone = FakeWaiter("call", wants=False)  # cancelled while it waited, unseen by the gate
    gate.enter(gone, max_queue=1, provider="local", first=True)
    gate.release()
    assert (gone.offered, b.offered) == (1, 1)
    assert gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=0)
    # Past the follow-up, the line's limit is the usual one again.
    gate.enter(FakeWaiter("c"), max_queue=1, provider="local")
    with pytest.raises(QueueFull):
        gate.enter(FakeWaiter("d"), max_queue=1, provider="local")


class ScriptedRuntime:
    """The runtime's ``Server`` for one slot, without a model: the free
    generation of a request with tools starts a call and goes on until it is
    stopped, then leaves once ``leave`` is set; the constrained one writes the
    call; any other answers "hi". ``entered`` is the order they ran in."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.leave = threading.Event()

    def handle_chat_completions(self, body: bytes, send: Callable[[bytes], bool]) -> None:
        request = json.loads(body)
        kind = "call" if "response_format" in request else "free" if "tools" in request else "plain"
        self.entered.append(kind)
        if kind == "free":
            stopped = send(_wire('{"name"'))
            for _ in range(5000):  # a bound, should nothing stop it
                if stopped:
                    break
                time.sleep(0.002)
                stopped = send(_wire(" "))
            self.leave.wait(30)
            return
        text = '{"name": "get_weather", "arguments": {"city": "Paris"}}' if kind == "call" else "hi"
        send(_wire(text))
        send(_wire("", finish="stop"))


def _wire(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return json.dumps({"id": "c", "created": 1, "model": "m", "choices": [choice]}).encode()


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


async def _open(runtime: Runtime, **params: object) -> ChunkStream:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    plan = plan_request(messages, {"stream": True, **params}, slots=1)
    timeouts = Timeouts(connect=5, idle=30, total=60)
    return await open_answer(
        runtime, plan, model="m", provider="local", timeouts=timeouts, max_queue=1
    )


@pytest.fixture
def scripted() -> Iterator[tuple[Runtime, ScriptedRuntime]]:
    server = ScriptedRuntime()
    runtime = Runtime(server, None, threads=1, n_ctx=4096, parallel=1, load_seconds=0.0)  # type: ignore[arg-type]
    yield runtime, server
    server.leave.set()


async def test_auto_s_call_keeps_the_slot_ahead_of_a_full_line(
    scripted: tuple[Runtime, ScriptedRuntime],
) -> None:
    runtime, server = scripted
    server.leave.set()
    tools = await _open(runtime, tools=[WEATHER], tool_choice="auto")  # has the slot
    plain = await _open(runtime)  # waits; the line (max_queue 1) is full
    assert runtime.gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    out = [batch async for batch in tools]  # the call starts now: no QueueFull
    calls = [d for b in out for c in b for ch in c.choices for d in ch.delta.tool_calls or []]
    assert calls[0]["function"]["name"] == "get_weather"
    assert [c.choices[0].finish_reason for b in out for c in b if c.choices][-1] == "tool_calls"
    text = "".join(c.choices[0].delta.content or "" for b in [b async for b in plain] for c in b)
    assert text == "hi"
    assert server.entered == ["free", "call", "plain"]  # the call before the one waiting
    assert runtime.gate.snapshot() == QueueSnapshot(busy=0, slots=1, queued=0)


async def test_a_client_gone_while_its_call_waits_frees_the_slot(
    scripted: tuple[Runtime, ScriptedRuntime],
) -> None:
    runtime, server = scripted
    tools = await _open(runtime, tools=[WEATHER], tool_choice="auto")
    plain = await _open(runtime)
    first = await tools.__anext__()  # the call waits for the free generation's slot
    assert isinstance(first, QueueWait) and first.ahead == 1
    assert runtime.gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=2)
    reading = asyncio.ensure_future(tools.__anext__())
    await asyncio.sleep(0)
    assert not reading.done()  # the read waits for the slot
    reading.cancel()  # the client went away, as a gateway cancels its task
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert runtime.gate.snapshot() == QueueSnapshot(busy=1, slots=1, queued=1)
    server.leave.set()  # the free generation leaves the runtime: the slot goes to plain
    text = "".join(c.choices[0].delta.content or "" for b in [b async for b in plain] for c in b)
    assert text == "hi" and server.entered == ["free", "plain"]
    await tools.aclose()
    assert runtime.gate.snapshot() == QueueSnapshot(busy=0, slots=1, queued=0)
