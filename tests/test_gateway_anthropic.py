"""``ails serve`` over an ``anthropic`` backend (tests/anthropic_upstream.py, a
local Messages API server), judged by the official SDKs: the three dialects,
streaming and not, a tools round trip, 529 retried then surfaced in each
dialect's form, count_tokens from the upstream, and a backend that points
at the gateway itself refused at start."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests

from anthropic_upstream import AnthropicUpstream
from gateway_proc import Gateway, run_serve

UPSTREAM_KEY = "sk-ant-upstream-key-0123"
KEY = "gateway-client-key-4567"
MODELS = ["claude-test", "overloaded", "overloaded:1", "midstream_error:2"]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def up() -> Iterator[AnthropicUpstream]:
    with AnthropicUpstream(api_key=UPSTREAM_KEY, models=MODELS) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: AnthropicUpstream) -> Iterator[Gateway]:
    env = {"ANTHROPIC_BASE_URL": up.url, "ANTHROPIC_API_KEY": UPSTREAM_KEY}
    g = Gateway(["--backend", "anthropic", "--api-key", KEY, "--max-retries", "1"], env=env)
    g.start()
    try:
        yield g
    finally:
        assert g.stop() == 0, g.log


@pytest.fixture
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


@pytest.fixture
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)


def _hi(text: str) -> Any:
    return [{"role": "user", "content": text}]


def test_models_come_from_the_upstream(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert [i for i in ids if "/" not in i] == MODELS
    assert "anthropic/claude-test" in ids


def test_chat_completions_over_anthropic(oai: openai.OpenAI, up: AnthropicUpstream) -> None:
    whole = oai.chat.completions.create(model="claude-test", messages=_hi("quick brown fox"))
    assert whole.choices[0].message.content == "quick brown fox"
    assert whole.usage is not None and whole.usage.completion_tokens == 3
    assert up.requests[-1].headers["x-api-key"] == UPSTREAM_KEY
    stream = oai.chat.completions.create(
        model="claude-test", messages=_hi("lazy dog sleeps"), stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "lazy dog sleeps" and len(pieces) == 3


def test_responses_over_anthropic(oai: openai.OpenAI, up: AnthropicUpstream) -> None:
    response = oai.responses.create(
        model="claude-test", input="one small step", instructions="Be brief."
    )
    assert response.output_text == "one small step" and response.status == "completed"
    assert up.requests[-1].body["system"] == "Be brief."
    with oai.responses.stream(model="claude-test", input="giant leap here") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "giant leap here" and final.output_text == "giant leap here"


def test_messages_create_and_stream(claude: anthropic.Anthropic, up: AnthropicUpstream) -> None:
    message = claude.messages.create(
        model="claude-test", max_tokens=50, system="Be brief.", messages=_hi("hello over there")
    )
    assert message.content[0].text == "hello over there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3
    assert up.requests[-1].body["max_tokens"] == 50
    with claude.messages.stream(model="claude-test", max_tokens=2, messages=_hi("a b c")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "a b" and final.stop_reason == "max_tokens"
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tools_round_trip(
    claude: anthropic.Anthropic, up: AnthropicUpstream, stream: bool
) -> None:
    turns: Any = _hi("use get_weather for Paris")
    if stream:
        with claude.messages.stream(
            model="claude-test", max_tokens=50, tools=[WEATHER], messages=turns
        ) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(
            model="claude-test", max_tokens=50, tools=[WEATHER], messages=turns
        )
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "use get_weather for Paris"}
    turns += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "rain all day"}]},
    ]  # fmt: skip
    final = claude.messages.create(
        model="claude-test", max_tokens=50, tools=[WEATHER], messages=turns
    )
    assert final.content[0].text == "tool said: rain all day"  # type: ignore[union-attr]
    sent = up.requests[-1].body["messages"]
    assert sent[-1]["content"][0]["tool_use_id"] == use.id  # the upstream checked it answers
    assert sent[-2]["content"][-1]["id"] == use.id


def test_an_overloaded_upstream_is_retried_then_each_dialect_says_so(
    gw: Gateway, up: AnthropicUpstream, claude: anthropic.Anthropic, oai: openai.OpenAI
) -> None:
    ok = claude.messages.create(model="overloaded:1", max_tokens=9, messages=_hi("second try"))
    assert ok.content[0].text == "second try"  # type: ignore[union-attr]
    assert up.attempts("overloaded:1") == 2
    with pytest.raises(anthropic.InternalServerError) as down:
        claude.messages.create(model="overloaded", max_tokens=9, messages=_hi("x"))
    assert down.value.status_code == 529
    assert down.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as chat:
        oai.chat.completions.create(model="overloaded", messages=_hi("x"))
    assert chat.value.status_code == 502 and chat.value.code == "overloaded_error"
    with pytest.raises(openai.APIStatusError) as resp:
        oai.responses.create(model="overloaded", input="x")
    assert resp.value.status_code == 502
    assert up.attempts("overloaded") == 6  # each of the three: one retry


def test_a_mid_stream_error_event_reaches_each_dialect(
    claude: anthropic.Anthropic, oai: openai.OpenAI
) -> None:
    stream = claude.messages.stream(
        model="midstream_error:2", max_tokens=20, messages=_hi("a b c d")
    )
    with pytest.raises(anthropic.APIStatusError) as info, stream as s:
        for _ in s:
            pass
    assert "Overloaded" in str(info.value)
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in oai.chat.completions.create(
            model="midstream_error:2", messages=_hi("a b c d"), stream=True
        ):
            pass


def test_count_tokens_is_the_upstreams(
    gw: Gateway, claude: anthropic.Anthropic, up: AnthropicUpstream
) -> None:
    ask: Any = {"model": "claude-test", "system": "Count these words.", "tools": [WEATHER],
                "messages": _hi("how long is this prompt")}  # fmt: skip
    direct = anthropic.Anthropic(base_url=up.url, api_key=UPSTREAM_KEY, max_retries=0)
    expected = direct.messages.count_tokens(**ask).input_tokens
    assert claude.messages.count_tokens(**ask).input_tokens == expected
    assert up.requests[-1].path == "/v1/messages/count_tokens"
    r = requests.post(f"{gw.url}/v1/messages/count_tokens", json=ask,
                      headers={"x-api-key": KEY}, timeout=10)  # fmt: skip
    assert r.status_code == 200 and r.headers["x-ails-token-count"] == "exact"
    assert r.json() == {"input_tokens": expected}


def test_a_named_anthropic_backend(up: AnthropicUpstream, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.claude]\ntype = "anthropic"\nbase_url = "{up.url}"\n'
        'api_key_env = "CLAUDE_UPSTREAM_KEY"\n'
    )
    env = {"AILS_CONFIG": str(config), "CLAUDE_UPSTREAM_KEY": UPSTREAM_KEY}
    with Gateway(["--backend", "claude"], env=env) as g:
        sdk = anthropic.Anthropic(base_url=g.url, api_key="unused", max_retries=0)
        reply = sdk.messages.create(
            model="claude/claude-test", max_tokens=9, messages=_hi("named one")
        )
        assert reply.content[0].text == "named one"  # type: ignore[union-attr]
    assert up.requests[-1].headers["x-api-key"] == UPSTREAM_KEY


def test_an_anthropic_backend_pointing_at_the_gateway_itself_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}", "ANTHROPIC_API_KEY": "k",
           "AILS_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
    result = run_serve(["--port", str(port), "--backend", "anthropic"], env=env)
    assert result.returncode == 2, result.stderr
    assert "backend anthropic points at this gateway itself" in result.stderr
    assert json.dumps(result.stderr).count("Traceback") == 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"function": "oops"}]}]},
      "messages[1].tool_calls[0]"),
     ({"messages": [{"role": "assistant", "tool_calls": "oops"}]}, "messages[0].tool_calls"),
     ({"tools": [5]}, "tools[0]"),
     ({"tools": [{"type": "function", "function": "oops"}]}, "tools[0]")],
)  # fmt: skip
def test_a_malformed_tool_call_or_tool_is_a_400_naming_it_not_a_crash(
    oai: openai.OpenAI, up: AnthropicUpstream, extra: dict[str, Any], param: str
) -> None:
    """The Messages request is written from the chat request; a tool call or
    a tool in it that is not one is refused before anything is sent."""
    body: dict[str, Any] = {"messages": _hi("hi"), **extra}
    sent = len(up.requests)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="claude-test", **body)
    error = info.value.body
    assert isinstance(error, dict) and error.get("param") == param, error
    assert len(up.requests) == sent  # nothing reached the upstream
