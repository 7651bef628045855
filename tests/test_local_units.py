"""The embedded model's request checks, schema allow-list, tool-call reading and
stream assembly, as plain values (no model: tests/test_local_openai.py runs it)."""

from __future__ import annotations

import datetime
import enum
from typing import Any

import click
import hypothesis.strategies as st
import jsonschema
import pytest
from hypothesis import given, settings
from openai.types.chat import completion_create_params
from pydantic import BaseModel

import ails
from ails.cli._schema import concise_schema, load_schema
from ails.errors import BadRequest
from ails.local.choices import FoldUsage, MergedChoices, UsageFolder
from ails.local.params import KNOWN, plan_request
from ails.local.tools import (
    call_schema,
    parse_tools,
    plan_tools,
    read_call,
    read_partial_call,
    starts_as_call,
)
from ails.providers.base import ChunkStream
from ails.types import Chunk, ChunkChoice, Delta, Usage, completion_from_chunks

HI = [{"role": "user", "content": "hi"}]


def refused(fn: Any, *args: Any, **kw: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        fn(*args, **kw)
    assert info.value.status == 400
    return info.value


# -- parameters ------------------------------------------------------------------------------


def test_every_name_of_the_openai_reference_is_known() -> None:
    reference = set(completion_create_params.CompletionCreateParamsBase.__annotations__)
    assert reference <= KNOWN


def test_unknown_names_are_refused_with_a_suggestion() -> None:
    err = refused(plan_request, HI, {"temprature": 0.2}, slots=2)
    assert err.code == "unsupported_parameter" and err.param == "temprature"
    assert "'temperature'" in err.message


def test_reference_names_are_refused_only_when_they_ask_for_something() -> None:
    no_ops = {"modalities": ["text"], "audio": None, "functions": [], "web_search_options": {}}
    plan_request(HI, no_ops, slots=2)
    for name, value in [
        ("modalities", ["text", "audio"]),
        ("web_search_options", {"search_context_size": "low"}),
        ("functions", [{"name": "f"}]),
        ("function_call", {"name": "f"}),
        ("moderation", {"mode": "block"}),
    ]:
        err = refused(plan_request, HI, {name: value}, slots=2)
        assert err.param == name and err.code == "unsupported_parameter"


def test_the_runtime_request_from_openai_names() -> None:
    plan = plan_request(
        HI,
        {
            "max_tokens": 50,
            "max_completion_tokens": 20,
            "stop": "END",
            "logprobs": True,
            "frequency_penalty": 0.5,
            "top_k": 40,
            "seed": 3,
            "n": 2,
            "user": "ignored",
        },
        slots=2,
    )
    assert plan.body["max_tokens"] == 20 and plan.body["stop"] == ["END"]
    assert plan.body["top_k"] == 40 and plan.body["frequency_penalty"] == 0.5
    assert plan.body["top_logprobs"] == 1 and plan.empty_top_logprobs
    assert plan.n == 2 and b'"seed":4' in plan.choice_body(1)
    assert "user" not in plan.body and not plan.include_usage


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"n": 3}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"logit_bias": {"hello": 5}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ],
)
def test_bad_values_name_their_param(params: dict[str, Any], param: str) -> None:
    assert refused(plan_request, HI, params, slots=2).param == param


def test_message_objects_are_taken_like_dicts() -> None:
    plan = plan_request([ails.Message(role="user", content="hi")], {}, slots=1)
    assert plan.body["messages"] == HI


def test_media_parts_and_broken_call_arguments_are_refused_by_position() -> None:
    for kind in ("image_url", "input_audio", "file"):
        messages = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": kind}]},
        ]
        err = refused(plan_request, messages, {}, slots=2)
        assert err.code == "unsupported_content" and err.param == "messages[1].content[1]"
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    messages = [*HI, {"role": "assistant", "tool_calls": [call]}]
    err = refused(plan_request, messages, {}, slots=2)
    assert err.param == "messages[1].tool_calls[0].function.arguments"


# -- tools -------------------------------------------------------------------------------------


class Unit(enum.Enum):
    C = "c"
    F = "f"


class Loc(BaseModel):
    city: str
    unit: Unit


class Lookup(BaseModel):
    where: Loc
    when: datetime.date | None = None


def _tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def test_the_call_schema_keeps_each_tools_references() -> None:
    tools = parse_tools([_tool("lookup", Lookup.model_json_schema()), _tool("ping")])
    plan = plan_tools(tools, "required", None)
    assert plan is not None and plan.mode == "required"
    schema = call_schema(plan)
    call = {"name": "lookup", "arguments": {"where": {"city": "Oslo", "unit": "c"}}}
    jsonschema.validate(call, schema)
    jsonschema.validate({"name": "ping", "arguments": {}}, schema)
    for wrong in (
        {"name": "lookup", "arguments": {"where": {"city": "Oslo", "unit": "k"}}},
        {"name": "ping", "arguments": {"x": 1}},
        {"name": "other", "arguments": {}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_tool_choice_plans() -> None:
    tools = parse_tools([_tool("a"), _tool("b")])
    assert plan_tools(tools, "none", None) is None
    assert plan_tools((), None, None) is None
    auto = plan_tools(tools, "auto", {"type": "object"})
    assert auto is not None and auto.mode == "auto" and auto.response_schema is not None
    named = plan_tools(tools, {"type": "function", "function": {"name": "b"}}, None)
    assert named is not None and [t.name for t in named.callable] == ["b"]
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [_tool("a")]},
    }
    chosen = plan_tools(tools, allowed, None)
    assert chosen is not None and chosen.mode == "required" and chosen.callable[0].name == "a"
    err = refused(plan_tools, tools, {"type": "function", "function": {"name": "c"}}, None)
    assert err.param == "tool_choice.function.name"


def test_reading_calls() -> None:
    plan = plan_tools(parse_tools([_tool("get")]), "required", None)
    assert plan is not None
    call = read_call('{"name": "get", "arguments": {"q": "x y"}}', plan)
    assert call is not None and call.name == "get" and call.arguments == '{"q":"x y"}'
    assert read_call('{"name": "other", "arguments": {}}', plan) is None
    assert read_call('{"answer": 1}', plan) is None
    cut = read_partial_call('{"name": "get", "arguments": {"q": "x')
    assert cut is not None and cut.name == "get" and cut.arguments == '{"q": "x'


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("", None),
        ("``", None),
        ("```json\n{", None),
        ('```json\n{"name"', True),
        ('<tool_call>\n{"name": "f"', True),
        ('\n\n{\n  "name"', True),
        ("```python\nprint(1)", False),
        ('{"answer"', False),
        ("Hello", False),
        (" " * 200, False),
    ],
)
def test_auto_decides_from_the_first_characters(text: str, decision: bool | None) -> None:
    assert starts_as_call(text) is decision


# -- assembling an answer ------------------------------------------------------------------------


def _chunk(index: int = 0, content: str | None = None, finish: str | None = None) -> Chunk:
    choice = ChunkChoice(index=index, delta=Delta(content=content), finish_reason=finish)
    return Chunk(id=f"id{index}", model="default", choices=[choice])


def _usage(prompt: int, completion: int) -> Chunk:
    return Chunk(id="u", usage=Usage(prompt, completion, prompt + completion))


class Listed(ChunkStream):
    """A stream of ready batches (what a generation would hand over)."""

    def __init__(self, batches: list[list[Chunk]]) -> None:
        self.batches = list(batches)
        self.closed = False

    async def __anext__(self) -> list[Chunk]:
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)

    async def aclose(self) -> None:
        self.closed = True


async def _all(stream: ChunkStream) -> list[Chunk]:
    return [c async for b in stream for c in b]


def test_usage_folds_into_the_final_chunk() -> None:
    out: list[Chunk] = []
    folder = UsageFolder()
    for chunk in (_chunk(content="a"), _chunk(finish="stop"), _usage(3, 1)):
        folder.add(chunk, out)
    assert [c.choices[0].finish_reason for c in out] == [None, "stop"]
    assert out[1].usage == Usage(3, 1, 4)


async def test_merged_choices_share_an_id_and_sum_usage() -> None:
    one = Listed([[_chunk(content="a")], [_chunk(finish="stop")], [_usage(5, 2)]])
    two = Listed([[_chunk(content="b"), _chunk(finish="length")], [_usage(5, 3)]])
    chunks = await _all(FoldUsage(MergedChoices([one, two])))
    assert {c.id for c in chunks} == {"id0"}
    done = completion_from_chunks(chunks)
    assert [(c.index, c.message.content) for c in done.choices] == [(0, "a"), (1, "b")]
    assert done.usage == Usage(5, 5, 10)
    assert all(c.choices for c in chunks), "no usage-only chunk unasked"
    merged = MergedChoices([Listed([[_chunk(content="x")]])])
    await merged.aclose()
    assert merged.inner[0].closed  # type: ignore[attr-defined]


def test_completion_joins_tool_call_fragments_and_logprobs() -> None:
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    chunks = [
        Chunk(choices=[ChunkChoice(delta=Delta(tool_calls=[head]))]),
        Chunk(
            choices=[
                ChunkChoice(delta=Delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]))
            ]
        ),
        Chunk(choices=[ChunkChoice(finish_reason="tool_calls")]),
    ]
    message = completion_from_chunks(chunks).choices[0].message
    assert message.content is None
    assert message.tool_calls == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    entry = {"token": "a", "logprob": -0.1, "top_logprobs": []}
    lp = {"content": [entry]}
    chunks = [Chunk(choices=[ChunkChoice(delta=Delta(content="a"), logprobs=lp)])]
    assert completion_from_chunks(chunks).choices[0].logprobs == {
        "content": [entry],
        "refusal": None,
    }


# -- ails --schema -------------------------------------------------------------------------------


def test_llms_concise_schema_form() -> None:
    assert concise_schema("name, age int, bio: one line about them") == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "bio": {"type": "string", "description": "one line about them"},
        },
        "required": ["name", "age", "bio"],
    }
    multi = concise_schema("score float: out of ten, with decimals\nok bool")
    assert multi["properties"]["score"] == {
        "type": "number",
        "description": "out of ten, with decimals",
    }
    assert multi["properties"]["ok"] == {"type": "boolean"}
    with pytest.raises(click.BadParameter):
        concise_schema("age integer")


def test_schema_from_json_or_a_file(tmp_path: Any) -> None:
    assert load_schema('{"type": "object"}') == {"type": "object"}
    path = tmp_path / "s.json"
    path.write_text('{"type": "array"}')
    assert load_schema(str(path)) == {"type": "array"}
    with pytest.raises(click.BadParameter):
        load_schema("{not json")


# -- anything a client may send: a 400 or a plan, never a crash ------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
NAMES = st.sampled_from([*sorted(KNOWN - {"model", "messages"}), "temprature"])
SCHEMA_KEYS = st.sampled_from(
    [
        *("type", "properties", "required", "items", "anyOf", "oneOf", "allOf", "$ref"),
        *("$defs", "enum", "pattern", "minimum", "format", "additionalProperties", "x"),
    ]
)
SCHEMAS = st.recursive(
    st.dictionaries(SCHEMA_KEYS, JSON, max_size=3),
    lambda inner: st.dictionaries(
        SCHEMA_KEYS, inner | JSON | st.lists(inner, max_size=3), max_size=4
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(NAMES, JSON, max_size=4), messages=JSON)
def test_any_request_is_a_plan_or_a_400(params: dict[str, Any], messages: Any) -> None:
    try:
        plan_request(messages, params, slots=2)
    except BadRequest as exc:
        assert (exc.status == 400 and exc.param is not None) or exc.code == "invalid_value"


@settings(max_examples=200, deadline=None)
@given(schema=SCHEMAS, choice=JSON)
def test_any_schema_or_tool_choice_is_accepted_or_a_400(schema: Any, choice: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    for params in (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
        {"tools": tools, "tool_choice": choice},
    ):
        try:
            plan = plan_request(HI, params, slots=2)
        except BadRequest as exc:
            assert exc.status == 400
        else:
            if plan.tools is not None:
                call_schema(plan.tools)
