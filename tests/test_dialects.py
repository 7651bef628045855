"""The Anthropic Messages and OpenAI Responses translations
(src/ails/server/dialects/), judged by the official SDKs.

The pure translations are checked on plain values; then a real aiohttp server
on 127.0.0.1 runs them as an edge would (the SDK's own request translated in,
a recorded chunk sequence translated out) and the official ``anthropic`` and
``openai`` SDKs parse what it sends, streamed and not. The wiring into
``ails serve`` is tested where it lands; this file pins the shapes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from ails.errors import ProtocolError as AilsProtocolError
from ails.errors import RateLimited, UpstreamUnavailable
from ails.providers import anthropic_wire as wire
from ails.server.dialects import messages_request as mreq
from ails.server.dialects import messages_stream as mout
from ails.server.dialects import responses_request as rreq
from ails.server.dialects import responses_stream as rout
from ails.server.errors import GatewayError
from ails.types import Chunk, ChunkChoice, Delta, Usage, completion_from_chunks
from ails.wire import named_events
from dialect_values import sent_frames

# -- recorded chunk sequences, as a backend streams them ----------------------------------------


def _chunk(
    content: str | None = None,
    *,
    calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    usage: Usage | None = None,
) -> Chunk:
    choices = [] if usage else [ChunkChoice(delta=Delta(content=content, tool_calls=calls),
                                            finish_reason=finish)]  # fmt: skip
    return Chunk(id="chatcmpl-1", model="backend-name", choices=choices, usage=usage)


def _call(index: int, fragment: str, *, name: str | None = None, cid: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
    if name:
        call.update(id=cid, type="function")
        call["function"]["name"] = name
    return call


SCRIPTS: dict[str, list[Chunk]] = {
    "text": [_chunk("Hello"), _chunk(", world"), _chunk(finish="stop"),
             _chunk(usage=Usage(7, 3, 10))],
    "cut": [_chunk("Hello"), _chunk(" there"), _chunk(finish="length"),
            _chunk(usage=Usage(7, 2, 9))],
    "tools": [
        _chunk("Let me look."),
        _chunk(calls=[_call(0, "", name="get_weather", cid="call_a")]),
        _chunk(calls=[_call(0, '{"city": ')]),
        _chunk(calls=[_call(0, '"Paris"}')]),
        _chunk(calls=[_call(1, '{"city": "Oslo"}', name="get_weather", cid="call_b")]),
        _chunk(finish="tool_calls"),
        _chunk(usage=Usage(20, 12, 32)),
    ],
    "custom": [
        _chunk(calls=[_call(0, '{"input": "*** Begin Patch', name="apply_patch", cid="call_p")]),
        _chunk(calls=[_call(0, '\\n*** End Patch"}')]),
        _chunk(finish="tool_calls"),
    ],
    "empty": [_chunk(finish="stop")],
}  # fmt: skip

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


# -- a real server that runs the translations ----------------------------------------------------


class DialectEdge:
    """``/v1/messages`` and ``/v1/responses`` on 127.0.0.1: the request is
    translated in (and recorded), the script named by the model translated out."""

    def __init__(self) -> None:
        self.chats: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> DialectEdge:
        ready = threading.Event()
        threading.Thread(target=self._main, args=(ready,), daemon=True).start()
        assert ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/responses", self._responses)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _sse(self, request: web.Request, frames: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(frames)
        await response.write_eof()
        return response

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            translated = mreq.request_to_chat(await request.json())
        except GatewayError as exc:
            status, body = mout.error_status_and_body(exc.status, exc.message)
            return web.json_response(body, status=status)
        self.chats.append(translated.chat)
        script = SCRIPTS[translated.model]
        if not translated.stream:
            done = completion_from_chunks(script)
            return web.json_response(mout.completion_to_message(done, model=translated.model))
        stream = mout.MessageStream(model=translated.model)
        events = [*stream.start(), mout.ping()]
        for chunk in script:
            events += stream.feed(chunk)
        return await self._sse(request, named_events(events + stream.finish()))

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        try:
            translated = rreq.request_to_chat(await request.json())
        except GatewayError as exc:
            return web.json_response(exc.body(), status=exc.status)
        self.chats.append(translated.chat)
        script = SCRIPTS[translated.model]
        if not translated.stream:
            done = completion_from_chunks(script)
            answer, _ = rout.completion_to_response(done, translated, created_at=time.time())
            return web.Response(body=answer, content_type="application/json")
        stream = rout.ResponseStream(translated, created_at=time.time())
        events = stream.start()
        for chunk in script:
            events += stream.feed(chunk)
        return await self._sse(request, named_events(events + stream.finish()))


@pytest.fixture(scope="module")
def edge() -> Iterator[DialectEdge]:
    with DialectEdge() as e:
        yield e


@pytest.fixture
def claude(edge: DialectEdge) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=edge.url, api_key="k", max_retries=0)


@pytest.fixture
def oai(edge: DialectEdge) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{edge.url}/v1", api_key="k", max_retries=0)


# -- Anthropic Messages, through the anthropic SDK ----------------------------------------------

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stream", [False, True])
def test_messages_text_answer(claude: anthropic.Anthropic, stream: bool) -> None:
    if stream:
        with claude.messages.stream(model="text", max_tokens=50, messages=HI) as s:
            pieces = list(s.text_stream)
            message = s.get_final_message()
        assert pieces == ["Hello", ", world"]
    else:
        message = claude.messages.create(model="text", max_tokens=50, messages=HI)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello, world"  # type: ignore[union-attr]
    assert message.model == "text" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 3)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_calls_become_tool_use_blocks(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
    kwargs: Any = dict(model="tools", max_tokens=50, messages=HI, tools=tools)
    if stream:
        with claude.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = claude.messages.create(**kwargs)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.id, c.name, c.input) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Oslo"}),
    ]
    assert message.stop_reason == "tool_use"


def test_messages_stream_events_in_order(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="cut", max_tokens=2, messages=HI) as s:
        kinds = [event.type for event in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 2


def test_messages_empty_answer_is_one_empty_text_block(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="empty", max_tokens=5, messages=HI) as s:
        final = s.get_final_message()
    assert [(b.type, getattr(b, "text", None)) for b in final.content] == [("text", "")]


def test_messages_request_as_claude_code_sends_it(
    claude: anthropic.Anthropic, edge: DialectEdge
) -> None:
    """System blocks, cache marks, thinking, a tool round trip and a server tool."""
    tools: Any = [
        {"name": "get_weather", "input_schema": WEATHER, "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "21 C"}]},
            {"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}},
        ]},
    ]  # fmt: skip
    claude.messages.create(
        model="text",
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind."}],
        messages=messages,
        tools=tools,
        tool_choice={"type": "auto"},
        thinking={"type": "disabled"},
        metadata={"user_id": "u1"},
        stop_sequences=["END"],
        extra_query={"beta": "true"},
        extra_body={"context_management": {"edits": []}},
    )
    chat = edge.chats[-1]
    assert chat["messages"] == [
        {"role": "system", "content": "You are terse.\n\nBe kind."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},
        {"role": "user", "content": "And now?"},
    ]  # fmt: skip
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather"]
    assert chat["tool_choice"] == "auto" and chat["stop"] == ["END"] and chat["user"] == "u1"
    assert chat["max_tokens"] == 64 and "thinking" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HI, "max_tokens": 5}, "model"),
        ({"model": "text", "messages": HI}, "max_tokens"),
        ({"model": "text", "messages": [], "max_tokens": 5}, "messages"),
        ({"model": "text", "messages": [{"role": "robot", "content": "x"}], "max_tokens": 5},
         "messages[0]"),
        ({"model": "text", "messages": HI, "max_tokens": 5, "tools": [
            {"type": "web_search_20250305", "name": "web_search"}],
          "tool_choice": {"type": "tool", "name": "web_search"}}, "tool_choice"),
    ],
)  # fmt: skip
def test_messages_bad_requests_are_anthropic_400s(
    claude: anthropic.Anthropic, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(GatewayError) as info:
        mreq.request_to_chat(body)
    assert info.value.status == 400 and info.value.param == param
    # And through the SDK: its own error class, with Anthropic's error shape.
    with pytest.raises(anthropic.BadRequestError) as sdk:
        claude.post("/v1/messages", body=body, cast_to=object)
    assert sdk.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_anthropic_error_statuses() -> None:
    table = {
        400: (400, "invalid_request_error"), 401: (401, "authentication_error"),
        403: (403, "permission_error"), 404: (404, "not_found_error"),
        413: (413, "request_too_large"), 429: (429, "rate_limit_error"),
        502: (529, "overloaded_error"), 503: (529, "overloaded_error"),
        504: (504, "timeout_error"), 500: (500, "api_error"), 415: (415, "invalid_request_error"),
    }  # fmt: skip
    for status, (want_status, kind) in table.items():
        got_status, body = mout.error_status_and_body(status, "m")
        assert (got_status, body["error"]["type"], body["type"]) == (want_status, kind, "error")
    # An upstream refusing the gateway's own key: our failure, not a busy backend.
    got_status, body = mout.error_status_and_body(502, "m", "upstream_auth_failed")
    assert (got_status, body["error"]["type"]) == (500, "api_error")


# -- OpenAI Responses, through the openai SDK ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_responses_text_answer(oai: openai.OpenAI, stream: bool) -> None:
    if stream:
        with oai.responses.stream(model="text", input="hi") as s:
            deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
            response = s.get_final_response()
        assert deltas == ["Hello", ", world"]
    else:
        response = oai.responses.create(model="text", input="hi")
    assert response.output_text == "Hello, world" and response.status == "completed"
    assert response.model == "text" and response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_calls(oai: openai.OpenAI, stream: bool) -> None:
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True},
        {"type": "web_search"},
    ]
    if stream:
        with oai.responses.stream(model="tools", input="hi", tools=tools) as s:
            events = list(s)
            response = s.get_final_response()
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert len({e.response.id for e in events if hasattr(e, "response")}) == 1
        assert [e.sequence_number for e in events] == list(range(len(events)))
        added = {e.item.id for e in events if e.type == "response.output_item.added"}
        done = {e.item.id for e in events if e.type == "response.output_item.done"}
        assert added == done and len(added) == 3
    else:
        response = oai.responses.create(model="tools", input="hi", tools=tools)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Oslo"}),
    ]
    assert response.output_text == "Let me look."


def test_responses_max_output_tokens_is_incomplete(oai: openai.OpenAI) -> None:
    # As OpenAI does: the stream ends in response.incomplete, not .completed
    # (so the SDK's get_final_response() refuses it, as it does OpenAI's).
    with oai.responses.stream(model="cut", input="hi", max_output_tokens=2) as s:
        events = list(s)
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == "Hello there"
    done = oai.responses.create(model="cut", input="hi", max_output_tokens=2)
    assert done.status == "incomplete" and done.output_text == "Hello there"


def test_responses_custom_tool_round_trip(oai: openai.OpenAI, edge: DialectEdge) -> None:
    tools: Any = [{"type": "custom", "name": "apply_patch", "description": "Patch files"}]
    with oai.responses.stream(model="custom", input="fix it", tools=tools) as s:
        response = s.get_final_response()
    (call,) = response.output
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert call.input == "*** Begin Patch\n*** End Patch"
    assert edge.chats[-1]["tools"][0]["function"]["parameters"]["required"] == ["input"]


def test_responses_request_as_codex_sends_it(oai: openai.OpenAI, edge: DialectEdge) -> None:
    """Developer role, reasoning, store false, consecutive calls, their outputs,
    hosted tools and a namespace."""
    items: Any = [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather",
         "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "21 C"},
        {"type": "function_call_output", "call_id": "c2", "output": "9 C"},
    ]  # fmt: skip
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": WEATHER},
        {"type": "namespace", "name": "crm", "description": "CRM", "tools": [
            {"type": "function", "name": "lookup", "parameters": WEATHER}]},
        {"type": "web_search"}, {"type": "local_shell"},
    ]  # fmt: skip
    oai.responses.create(
        model="text",
        input=items,
        instructions="Be terse.",
        tools=tools,
        store=False,
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
        text={"format": {"type": "json_object"}},
        max_output_tokens=32,
    )
    chat = edge.chats[-1]
    assert chat["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        {"role": "tool", "tool_call_id": "c2", "content": "9 C"},
    ]  # fmt: skip
    names = [t["function"]["name"] for t in chat["tools"]]
    assert names == ["get_weather", "crm__lookup"]
    assert chat["response_format"] == {"type": "json_object"} and chat["max_tokens"] == 32


def test_responses_hosted_tools_are_dropped_and_named() -> None:
    body = {"model": "m", "input": "x", "tools": [{"type": "web_search"}, {"type": "file_search"}]}
    translated = rreq.request_to_chat(body)
    assert translated.dropped_tools == ["web_search", "file_search"]
    assert "tools" not in translated.chat
    with pytest.raises(GatewayError) as info:
        rreq.request_to_chat({**body, "tool_choice": {"type": "web_search"}})
    assert info.value.status == 400 and info.value.param == "tool_choice"


def test_responses_history_continues_a_conversation() -> None:
    """What ``previous_response_id`` needs: the answer as chat messages, fed
    back in front of the next input, with namespaced calls named as before."""
    lookup = {"type": "function", "name": "lookup", "parameters": WEATHER}
    tools = [{"type": "namespace", "name": "crm", "description": "CRM", "tools": [lookup]}]
    first = rreq.request_to_chat({"model": "m", "input": "Find Ann", "tools": tools})
    stream = rout.ResponseStream(first, created_at=0.0)
    stream.feed(_chunk(calls=[_call(0, '{"city": "x"}', name="crm__lookup", cid="c9")]))
    stream.feed(_chunk(finish="tool_calls"))
    stream.finish()
    (item,) = stream.response()["output"]
    assert (item["namespace"], item["name"]) == ("crm", "lookup")
    history = [*first.messages, stream.history_message()]
    follow = [{"type": "function_call_output", "call_id": "c9", "output": "found"}]
    second = rreq.request_to_chat({"model": "m", "input": follow, "tools": tools}, history)
    assert second.chat["messages"][-2]["tool_calls"][0]["function"]["name"] == "crm__lookup"
    assert second.chat["messages"][-1] == {"role": "tool", "tool_call_id": "c9", "content": "found"}
    assert second.chat["messages"][0] == {"role": "user", "content": "Find Ann"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text"),
    ],
)
def test_responses_bad_requests_are_400s(
    oai: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(GatewayError) as info:
        rreq.request_to_chat(body)
    assert info.value.status == 400 and info.value.param == param
    with pytest.raises(openai.BadRequestError) as sdk:
        oai.post("/responses", body=body, cast_to=object)
    assert sdk.value.param == param


# -- the anthropic provider's pure half, against the edge's translation -------------------------


CHAT_WITH_TOOLS: list[dict[str, Any]] = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "c2", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
    {"role": "tool", "tool_call_id": "c2", "content": "9 C"},
    {"role": "user", "content": "Thanks. And tomorrow?"},
]  # fmt: skip


def test_a_chat_request_survives_the_trip_through_the_messages_api() -> None:
    """Written independently, the provider's chat → Messages and the edge's
    Messages → chat must be inverses on what both can say."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    body = wire.messages_body(
        "claude-x", CHAT_WITH_TOOLS, max_tokens=99, stop="END", tools=tools,
        tool_choice="required", parallel_tool_calls=False, temperature=0.5, stream=True,
    )  # fmt: skip
    # Anthropic wants alternating turns: both results and the next text are one user turn.
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][2]["content"]] == [
        "tool_result", "tool_result", "text",
    ]  # fmt: skip
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    back = mreq.request_to_chat(body).chat
    assert back["messages"][0] == CHAT_WITH_TOOLS[0]
    assert back["messages"][1] == CHAT_WITH_TOOLS[1]
    calls = back["messages"][2]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"}, {"city": "Oslo"},
    ]  # fmt: skip
    assert back["messages"][3:] == CHAT_WITH_TOOLS[3:]
    assert (back["max_tokens"], back["stop"], back["temperature"]) == (99, ["END"], 0.5)
    assert back["tool_choice"] == "required" and back["parallel_tool_calls"] is False


#: A token a client may send back: the naive client's marker, quotes, a
#: %-format, a line break, a backslash and text outside ASCII.
AWKWARD = 'say "data: x" 100% %d %s\nnext\\ line — ü 日本'


@pytest.mark.parametrize("dialect", ["messages", "responses"])
def test_a_token_with_data_colon_and_quotes_survives_each_dialect_s_frames(dialect: str) -> None:
    """The text deltas are whole frames written from templates; the text in
    them is the one part escaped, so every frame still holds exactly one
    ``data:`` line, its JSON names the event it is in, and the text reads
    back exactly."""
    stream: Any
    if dialect == "messages":
        stream = mout.MessageStream(model="m")
    else:
        stream = rout.ResponseStream(
            rreq.request_to_chat({"model": "m", "input": "x"}), created_at=0.0
        )
    events = stream.start()
    for chunk in [_chunk(AWKWARD), _chunk(AWKWARD[::-1]), _chunk(finish="stop")]:
        events += stream.feed(chunk)
    events += stream.finish()
    sent = sent_frames(events)
    assert all(data["type"] == name for name, data in sent)
    delta = "content_block_delta" if dialect == "messages" else "response.output_text.delta"
    texts = [d["delta"]["text"] if dialect == "messages" else d["delta"]
             for name, d in sent if name == delta]  # fmt: skip
    assert texts == [AWKWARD, AWKWARD[::-1]]
    assert named_events(events).count(b"data: ") == len(sent)


@pytest.mark.parametrize("script", ["text", "tools", "cut"])
def test_anthropic_events_turn_back_into_the_same_chunks(script: str) -> None:
    """Chunks → the edge's Messages events → the provider's chunks: the joined
    answer is the same text, calls, finish reason and usage."""
    stream = mout.MessageStream(model="m")
    events = stream.start()
    for chunk in SCRIPTS[script]:
        events += stream.feed(chunk)
    events += stream.finish()
    reader = wire.EventsToChunks()
    # As sent: some events are objects, some whole frames the stream wrote itself.
    chunks = [c for name, data in sent_frames(events) for c in reader.feed(name, data)]
    reader.end()
    want, got = completion_from_chunks(SCRIPTS[script]), completion_from_chunks(chunks)
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.choices[0].finish_reason == want.choices[0].finish_reason
    assert got.usage == want.usage
    got_calls = got.choices[0].message.tool_calls or []
    want_calls = want.choices[0].message.tool_calls or []
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in got_calls] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in want_calls
    ]  # fmt: skip
    # And a whole message, as the edge answers it, reads back the same way.
    message = mout.completion_to_message(want, model="m")
    whole = wire.message_to_completion(message)
    assert whole.choices[0].message.content == want.choices[0].message.content
    assert whole.choices[0].finish_reason == want.choices[0].finish_reason


def test_anthropic_stream_errors_are_typed() -> None:
    reader = wire.EventsToChunks()
    reader.feed("message_start", {"type": "message_start", "message": {"id": "m1"}})
    with pytest.raises(UpstreamUnavailable) as info:
        reader.feed("error", mout.error_event(503, "busy")[1])
    assert info.value.status == 529 and info.value.retryable and "busy" in str(info.value)
    with pytest.raises(RateLimited):
        reader.feed("error", mout.error_event(429, "slow down")[1])
    cut = wire.EventsToChunks()
    cut.feed("message_start", {"type": "message_start", "message": {}})
    with pytest.raises(AilsProtocolError, match="before message_stop"):
        cut.end()
