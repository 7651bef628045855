"""The embedded model through ``ails serve``, driven by the official openai SDK as a
client would drive OpenAI: structured output, tools, logprobs, ``n``, limits, and
the parameters clients send by default. Every generation sets a token limit.

Nothing here asserts what the model says, only what a client relies on: that the
JSON parses and validates, that calls parse, that limits and shapes hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from gateway_proc import Gateway

pytestmark = pytest.mark.local

ALIAS = "gpt-4o-mini"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_PARAMS,
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 40}},
            "required": ["zone"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris right now?"}]


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=130)
    hobbies: list[str] = Field(max_length=3)


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str = Field(max_length=40)


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with Gateway(["--alias", f"{ALIAS}=local/default"], start_timeout=180) as g:
        yield g


@pytest.fixture(scope="module")
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0, timeout=120)


def _chat(client: openai.OpenAI, **kw: Any) -> Any:
    kw.setdefault("model", ALIAS)
    kw.setdefault("messages", ASK_WEATHER)
    kw.setdefault("temperature", 0)
    kw.setdefault("seed", 1)
    return client.chat.completions.create(**kw)


# -- structured output -------------------------------------------------------------------


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    done = client.chat.completions.parse(
        model=ALIAS,
        messages=[{"role": "user", "content": "Invent a person who likes the sea."}],
        response_format=Person,
        max_completion_tokens=120,
        temperature=0,
    )
    choice = done.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person)
    assert done.model == ALIAS


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "when": {"type": "string", "format": "date"},
        "mood": {"anyOf": [{"type": "string", "enum": ["happy", "sad"]}, {"type": "null"}]},
    },
    "required": ["title", "rating", "tags", "when", "mood"],
    "additionalProperties": False,
}
PROMPTS = [
    "Review the film Jaws.",
    "Write a long poem about the sea, in prose, with no JSON at all.",  # invites prose
    "Rate your last holiday, give it a date and tags.",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_json_schema_and_json_object_answers_validate(client: openai.OpenAI, prompt: str) -> None:
    messages = [{"role": "user", "content": prompt}]
    done = _chat(
        client,
        messages=messages,
        max_tokens=150,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "review", "strict": True, "schema": SCHEMA},
        },
    )
    assert done.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(done.choices[0].message.content), SCHEMA)
    done = _chat(client, messages=messages, max_tokens=150, response_format={"type": "json_object"})
    if done.choices[0].finish_reason == "stop":  # a length cut is cut, as with OpenAI
        assert isinstance(json.loads(done.choices[0].message.content), dict)
    else:
        assert done.choices[0].message.content.lstrip().startswith("{")


def test_a_schema_keyword_that_is_not_enforced_is_a_400(client: openai.OpenAI) -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}
    with pytest.raises(openai.BadRequestError) as info:
        _chat(
            client,
            max_tokens=20,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "unsupported_schema"
    assert err["param"] == "response_format.json_schema.schema"
    assert "uniqueItems" in err["message"]


# -- tools ---------------------------------------------------------------------------------


def _check_call(call: Any, name: str, schema: dict[str, Any]) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == name
    jsonschema.validate(json.loads(call.function.arguments), schema)


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
def test_tool_call_not_streamed(client: openai.OpenAI, choice: Any) -> None:
    done = _chat(client, tools=[TIME_TOOL, WEATHER_TOOL], tool_choice=choice, max_tokens=60)
    c = done.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.content is None
    assert c.message.tool_calls and len(c.message.tool_calls) == 1
    call = c.message.tool_calls[0]
    if isinstance(choice, dict):
        _check_call(call, "get_weather", WEATHER_PARAMS)
    else:
        assert call.function.name in ("get_weather", "get_time")
        assert isinstance(json.loads(call.function.arguments), dict)
    assert done.model == ALIAS


def test_tool_call_streamed_through_the_sdk_stream_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=ALIAS,
        messages=ASK_WEATHER,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        stream_options={"include_usage": True},
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    c = final.choices[0]
    assert c.finish_reason == "tool_calls"
    call = c.message.tool_calls[0]
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert final.usage is not None and final.usage.completion_tokens <= 60


def test_streamed_tool_call_chunks_carry_indexes(client: openai.OpenAI) -> None:
    chunks = list(
        _chat(client, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=60, stream=True)
    )
    deltas = [d for ch in chunks for c in ch.choices for d in (c.delta.tool_calls or [])]
    assert deltas and all(d.index == 0 for d in deltas)
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert {ch.model for ch in chunks} == {ALIAS}


def test_tool_choice_none_never_calls(client: openai.OpenAI) -> None:
    done = _chat(client, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=12)
    c = done.choices[0]
    assert c.message.tool_calls is None and c.message.content
    assert c.finish_reason in ("stop", "length")


def test_two_turn_tool_exchange(client: openai.OpenAI) -> None:
    first = _chat(
        client,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
    )
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *ASK_WEATHER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "sunny"}'},
    ]
    second = _chat(client, messages=messages, tools=[WEATHER_TOOL], max_tokens=40)
    c = second.choices[0]
    assert c.finish_reason in ("stop", "length", "tool_calls")
    assert c.message.content or c.message.tool_calls
    # The call and its result were rendered into the prompt by the chat template.
    assert first.usage is not None and second.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 10


# -- logprobs, n, limits -----------------------------------------------------------------


def _check_logprobs(entries: list[Any], content: str, k: int) -> None:
    assert entries, "no logprobs"
    assert "".join(e.token for e in entries) == content
    for e in entries:
        assert e.logprob <= 0
        tops = [t.logprob for t in e.top_logprobs]
        assert len(tops) == k
        assert all(t <= 0 for t in tops) and tops == sorted(tops, reverse=True)


def test_logprobs_not_streamed_and_streamed(client: openai.OpenAI) -> None:
    done = _chat(client, logprobs=True, top_logprobs=3, max_tokens=6)
    c = done.choices[0]
    assert c.logprobs is not None and c.logprobs.content is not None
    _check_logprobs(c.logprobs.content, c.message.content or "", 3)
    chunks = list(_chat(client, logprobs=True, top_logprobs=2, max_tokens=6, stream=True))
    entries = [e for ch in chunks for c in ch.choices if c.logprobs for e in c.logprobs.content]
    text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    _check_logprobs(entries, text, 2)
    plain = _chat(client, logprobs=True, max_tokens=3).choices[0]
    assert plain.logprobs is not None
    _check_logprobs(plain.logprobs.content or [], plain.message.content or "", 0)


def test_n_gives_indexed_choices_with_summed_usage(client: openai.OpenAI) -> None:
    done = _chat(client, n=2, temperature=1, seed=7, max_tokens=8)
    assert [c.index for c in done.choices] == [0, 1]
    assert all(c.message.content for c in done.choices)
    assert done.usage is not None and 2 <= done.usage.completion_tokens <= 16
    chunks = list(_chat(client, n=2, temperature=1, seed=7, max_tokens=4, stream=True))
    assert {c.index for ch in chunks for c in ch.choices} == {0, 1}
    assert len({ch.id for ch in chunks}) == 1
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, n=5, max_tokens=2)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "n"


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    story = [{"role": "user", "content": "Tell me a long story about a dragon."}]
    done = _chat(client, messages=story, max_completion_tokens=5)
    assert done.usage is not None and done.usage.completion_tokens <= 5
    assert done.choices[0].finish_reason == "length"
    both = _chat(client, messages=story, max_completion_tokens=9, max_tokens=3)
    assert both.usage is not None and both.usage.completion_tokens <= 3


# -- what clients send by default, and what is refused ---------------------------------------


def test_parameters_clients_send_are_accepted(client: openai.OpenAI) -> None:
    done = _chat(
        client,
        max_tokens=3,
        n=1,
        frequency_penalty=0,
        presence_penalty=0,
        logprobs=False,
        user="someone",
        metadata={"app": "test"},
        store=False,
        parallel_tool_calls=True,
        tools=[],
        response_format={"type": "text"},
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        reasoning_effort="low",
        verbosity="low",
        modalities=["text"],
        logit_bias={"9707": -100},
        stop=["\n\n"],
        top_logprobs=0,
        extra_body={
            "prompt_cache_retention": "24h",
            "prompt_cache_options": {"mode": "implicit"},
            "prediction": {"type": "content", "content": "Hello"},
            "audio": None,
            "web_search_options": None,
            "moderation": None,
            "functions": None,
            "function_call": "auto",
            "tool_choice": "none",
        },
    )
    assert done.choices[0].message.content
    assert done.model == ALIAS


def test_an_unknown_parameter_is_a_400_that_names_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, max_tokens=2, extra_body={"temprature": 0.3})
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "unsupported_parameter" and err["param"] == "temprature"
    assert "temperature" in err["message"] and "supports: (" not in err["message"]


def test_an_image_part_is_a_400_not_a_retryable_error(client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, messages=messages, max_tokens=2)
    err = info.value.body
    assert isinstance(err, dict) and info.value.status_code == 400
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "unsupported_content" and err["param"] == "messages[0].content[1]"
    assert "text only" in err["message"]


def test_a_prompt_longer_than_the_context_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, messages=[{"role": "user", "content": "hello " * 5000}], max_tokens=2)
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "context_length_exceeded" and err["param"] == "messages"
