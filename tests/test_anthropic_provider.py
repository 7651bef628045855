"""The ``anthropic`` provider against a local Messages API server written from
Anthropic's reference (tests/anthropic_upstream.py): the library, the CLI,
streaming and not, tools, stop reasons, errors, retries, models, count_tokens.
Never the real service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ails
from ails.errors import (
    AuthFailed,
    BadRequest,
    NotFound,
    ProtocolError,
    RateLimited,
    UpstreamUnavailable,
)
from ails.providers import registry
from ails.providers.base import Timeouts
from anthropic_upstream import AnthropicUpstream, count_input
from cli_helpers import clean_env, run

KEY = "sk-ant-local-test-0123"
MODELS = ["claude-test", "claude-b", "claude-c", "claude-d", "overloaded", "overloaded:1",
          "rate_limited:1:0", "rate_limited:1:7", "midstream_error:2", "cut:2",
          "pings:3", "badshape"]  # fmt: skip
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def up() -> Iterator[AnthropicUpstream]:
    with AnthropicUpstream(api_key=KEY, models=MODELS, page_size=3) as u:
        yield u


def client(up: AnthropicUpstream, *, key: str = KEY, retries: int = 0) -> ails.Client:
    return ails.Client(
        providers={"anthropic": {"base_url": up.url, "api_key": key}}, max_retries=retries
    )


def hi(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def test_stream_and_whole_answer(up: AnthropicUpstream) -> None:
    with client(up) as c:
        whole = c.chat.completions.create(model="anthropic/claude-test", messages=hi("red fox"))
        stream = c.chat.completions.create(
            model="anthropic/claude-test", messages=hi("blue sky now"), stream=True
        )
        chunks = list(stream)
    assert whole.choices[0].message.content == "red fox"
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.prompt_tokens == 4 and whole.usage.completion_tokens == 2
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "blue sky now"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert usage[-1].prompt_tokens == 5 and usage[-1].completion_tokens == 3
    seen = up.requests[-1]
    assert seen.headers["x-api-key"] == KEY and seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief." and seen.body["stream"] is True
    text_block = {"type": "text", "text": "blue sky now"}
    assert seen.body["messages"] == [{"role": "user", "content": [text_block]}]


def test_tools_round_trip(up: AnthropicUpstream) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "use get_weather for Oslo"}]
    with client(up) as c:
        stream = c.chat.completions.create(
            model="anthropic/claude-test", messages=messages, tools=[WEATHER], stream=True
        )
        answer = ails.types.completion_from_chunks(list(stream))
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call["function"]["name"] == "get_weather"
        args = json.loads(call["function"]["arguments"])
        assert args == {"city": "use get_weather for Oslo", "days": 4}
        assert up.requests[-1].body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
        messages += [
            {"role": "assistant", "content": choice.message.content, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny and warm"},
        ]
        final = c.chat.completions.create(
            model="anthropic/claude-test", messages=messages, tools=[WEATHER]
        )
    assert final.choices[0].message.content == "tool said: sunny and warm"
    sent = up.requests[-1].body["messages"]
    assert sent[1]["content"][-1] == {"type": "tool_use", "id": call["id"],
                                      "name": "get_weather", "input": args}  # fmt: skip
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": call["id"],
                                   "content": "sunny and warm"}]  # fmt: skip


def test_forced_tool_and_stop_reasons(up: AnthropicUpstream) -> None:
    with client(up) as c:
        forced = c.chat.completions.create(
            model="anthropic/claude-test", messages=hi("three words here"), tools=[WEATHER],
            tool_choice="required",
        )  # fmt: skip
        assert up.requests[-1].body["tool_choice"] == {"type": "any"}
        assert forced.choices[0].message.tool_calls[0]["function"]["name"] == "get_weather"
        cut = c.chat.completions.create(
            model="anthropic/claude-test", messages=hi("one two three four"), max_tokens=2
        )
        assert cut.choices[0].message.content == "one two"
        assert cut.choices[0].finish_reason == "length"
        stopped = c.chat.completions.create(
            model="anthropic/claude-test", messages=hi("alpha beta STOP gamma"), stop="STOP"
        )
        assert up.requests[-1].body["stop_sequences"] == ["STOP"]
        assert stopped.choices[0].message.content.strip() == "alpha beta"
        assert stopped.choices[0].finish_reason == "stop"


def test_error_bodies_become_typed_errors(up: AnthropicUpstream) -> None:
    with client(up, key="sk-ant-wrong") as c, pytest.raises(AuthFailed) as auth:
        c.chat.completions.create(model="anthropic/claude-test", messages=hi("x"))
    assert auth.value.status == 401 and auth.value.code == "authentication_error"
    assert "invalid x-api-key" in str(auth.value)
    with client(up) as c:
        with pytest.raises(NotFound) as missing:
            c.chat.completions.create(model="anthropic/claude-zzz", messages=hi("x"))
        assert missing.value.code == "not_found_error" and "claude-zzz" in str(missing.value)
        orphan = [{"role": "user", "content": "x"},
                  {"role": "tool", "tool_call_id": "toolu_nobody", "content": "r"}]  # fmt: skip
        with pytest.raises(BadRequest) as bad:
            c.chat.completions.create(model="anthropic/claude-test", messages=orphan)
        assert bad.value.code == "invalid_request_error" and "toolu_nobody" in str(bad.value)
        with pytest.raises(BadRequest) as unsupported:
            c.chat.completions.create(model="anthropic/claude-test", messages=hi("x"), seed=3)
        assert unsupported.value.code == "unsupported_parameter"


def test_overloaded_529_is_retried_then_surfaces(up: AnthropicUpstream) -> None:
    with client(up, retries=1) as c:
        ok = c.chat.completions.create(model="anthropic/overloaded:1", messages=hi("made it"))
        assert ok.choices[0].message.content == "made it"
        assert up.attempts("overloaded:1") == 2
        before = up.attempts("overloaded")
        with pytest.raises(UpstreamUnavailable) as down:
            c.chat.completions.create(model="anthropic/overloaded", messages=hi("x"))
    assert up.attempts("overloaded") - before == 2
    assert down.value.status == 529 and down.value.code == "overloaded_error"
    assert down.value.retryable


def test_rate_limit_keeps_retry_after(up: AnthropicUpstream) -> None:
    with client(up) as c, pytest.raises(RateLimited) as limited:
        c.chat.completions.create(model="anthropic/rate_limited:1:7", messages=hi("x"))
    assert limited.value.retry_after == 7.0 and limited.value.code == "rate_limit_error"
    with client(up, retries=1) as c:  # retry-after: 0 is honoured, then it answers
        ok = c.chat.completions.create(model="anthropic/rate_limited:1:0", messages=hi("again"))
    assert ok.choices[0].message.content == "again" and up.attempts("rate_limited:1:0") == 2


def test_mid_stream_error_event_and_cut_stream_raise(up: AnthropicUpstream) -> None:
    with client(up) as c:
        stream = c.chat.completions.create(
            model="anthropic/midstream_error:2", messages=hi("a b c d e"), stream=True
        )
        got: list[str] = []
        with pytest.raises(UpstreamUnavailable) as info:
            for chunk in stream:
                got += [chunk.choices[0].delta.content or ""] if chunk.choices else []
        assert "".join(got) == "a b "
        assert info.value.code == "overloaded_error" and info.value.status == 529
        cut = c.chat.completions.create(
            model="anthropic/cut:2", messages=hi("a b c d e"), stream=True
        )
        with pytest.raises(ProtocolError, match="message_stop"):
            list(cut)


def test_an_answer_of_the_wrong_shape_is_a_protocol_error(up: AnthropicUpstream) -> None:
    with client(up) as c:
        with pytest.raises(ProtocolError, match="not what the Messages API sends"):
            c.chat.completions.create(model="anthropic/badshape", messages=hi("x"))
        stream = c.chat.completions.create(
            model="anthropic/badshape", messages=hi("x"), stream=True
        )
        with pytest.raises(ProtocolError, match="not what the Messages API sends"):
            list(stream)


def test_pings_are_not_content_for_the_idle_limit(up: AnthropicUpstream) -> None:
    providers = {"anthropic": {"base_url": up.url, "api_key": KEY}}
    with ails.Client(providers=providers, max_retries=0, idle_timeout=0.5) as c:
        stream = c.chat.completions.create(
            model="anthropic/pings:3", messages=hi("a b c"), stream=True
        )
        with pytest.raises(ails.Timeout) as info:
            list(stream)
    assert info.value.kind == "idle"


async def test_models_are_listed_across_pages(up: AnthropicUpstream) -> None:
    provider = registry.build(
        "claude", {"type": "anthropic", "base_url": up.url, "api_key": KEY}, timeouts=Timeouts()
    )
    try:
        assert await provider.list_models() == MODELS
        entries = await provider.list_model_objects()
    finally:
        await provider.aclose()
    pages = [s for s in up.requests if s.path == "/v1/models"][-4:]
    assert [p.body.get("after_id") for p in pages] == [None, "claude-c", "overloaded:1",
                                                      "midstream_error:2"]  # fmt: skip
    assert entries[0]["id"] == "claude-test" and entries[0]["display_name"] == "Claude-Test"
    assert entries[0]["created"] == 1735689600  # 2025-01-01T00:00:00Z


async def test_count_tokens_is_the_upstreams_count(up: AnthropicUpstream) -> None:
    provider = registry.build(
        "anthropic", {"base_url": up.url, "api_key": KEY}, timeouts=Timeouts()
    )
    messages = [*hi("how many words is this"), {"role": "assistant", "content": "four or five"}]
    try:
        counted = await provider.count_tokens("claude-test", messages, tools=[WEATHER])
    finally:
        await provider.aclose()
    seen = up.requests[-1]
    assert seen.path == "/v1/messages/count_tokens" and "max_tokens" not in seen.body
    assert counted is not None and counted.exact
    assert counted.tokens == count_input(seen.body) == 2 + 5 + 3 + 1 + 4


async def test_a_missing_key_fails_before_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    provider = registry.build("anthropic", {"base_url": "http://127.0.0.1:9"}, timeouts=Timeouts())
    assert "ANTHROPIC_API_KEY" in (provider.readiness() or "")
    with pytest.raises(AuthFailed, match="ANTHROPIC_API_KEY"):
        await provider.connect("claude-test", hi("x"))
    named = registry.build("claude", {"type": "anthropic"}, timeouts=Timeouts())
    assert "[providers.claude]" in (named.readiness() or "")


def test_described_like_the_other_providers() -> None:
    cls = registry.provider_class("anthropic")
    assert "anthropic" in registry.names()
    assert cls.key_env == ("ANTHROPIC_API_KEY",)
    assert cls.setting_env == {"base_url": "ANTHROPIC_BASE_URL"}
    meta = cls.metadata()
    assert meta["needs_auth"] and meta["supports_stream"] and "max_tokens" in meta["params"]
    assert "api_key" in cls.settings() and "base_url" in cls.settings()


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_prompt_over_anthropic(up: AnthropicUpstream, tmp_path: Path) -> None:
    env = clean_env(tmp_path, None)
    env.update(ANTHROPIC_BASE_URL=up.url, ANTHROPIC_API_KEY=KEY)
    result = run(env, "-m", "anthropic/claude-test", "green grass grows")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "green grass grows"
    assert up.requests[-1].headers["x-api-key"] == KEY


def test_cli_without_a_key_names_the_variable(up: AnthropicUpstream, tmp_path: Path) -> None:
    env = clean_env(tmp_path, None)
    env["ANTHROPIC_BASE_URL"] = up.url
    before = len(up.requests)
    result = run(env, "-m", "anthropic/claude-test", "hello")
    assert result.returncode != 0
    assert "ANTHROPIC_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert len(up.requests) == before  # refused before the network
