"""Whatever JSON object a client sends to ``/v1/messages`` or
``/v1/responses``, its translation into a chat request either succeeds or
raises the gateway's 400 (``GatewayError``), never another exception, which
the gateway would answer 500. Hypothesis builds bodies near the real shapes
(the fields each API has, with values of any JSON type, blocks and items of
each kind with wrong members) so that most of them reach deep into the
translation rather than failing on the first field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ails.server.dialects import messages_request as mreq
from ails.server.dialects import responses_request as rreq
from ails.server.errors import GatewayError
from dialect_values import anything


def shaped(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """An object with these members, each of its strategy three times in
    four and of any value the fourth (so that most bodies go deep, and every
    member is sometimes wrong)."""

    def loose(v: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        # (one_of(v, v, v, anything) would not do: it keeps one v)
        return st.integers(0, 3).flatmap(lambda i: anything if i == 0 else v)

    return st.fixed_dictionaries(
        {k: loose(v) for k, v in required.items()},
        optional={k: loose(v) for k, v in optional.items()},
    )


names = st.sampled_from(["f", "lookup", "crm__find", ""]) | st.text(max_size=5)
schema = st.just({"type": "object", "properties": {"q": {"type": "string"}}}) | anything
# -- Anthropic Messages
m_block = st.one_of(
    shaped({"type": st.just("text"), "text": st.text(max_size=5)}, {}),
    shaped({"type": st.just("image"), "source": shaped(
        {"type": st.sampled_from(["base64", "url"])},
        {"media_type": st.just("image/png"), "data": st.text(max_size=4), "url": st.text()})}, {}),
    shaped({"type": st.just("tool_use"), "id": st.text(max_size=4), "name": names,
            "input": anything}, {}),
    shaped({"type": st.just("tool_result"), "tool_use_id": st.text(max_size=4)},
           {"content": st.text(max_size=4) | st.lists(anything, max_size=2),
            "is_error": st.booleans()}),
    shaped({"type": st.sampled_from(["thinking", "document", "x"])}, {}),
)  # fmt: skip
m_message = shaped(
    {"role": st.sampled_from(["user", "assistant"]),
     "content": st.text(max_size=5) | st.lists(m_block, max_size=3)}, {}
)  # fmt: skip
m_tool = shaped(
    {"name": names},
    {"description": st.text(max_size=4), "input_schema": schema,
     "type": st.sampled_from(["custom", "web_search_20250305"])},
)  # fmt: skip
m_body = shaped(
    {"model": st.just("m"), "max_tokens": st.integers(1, 100),
     "messages": st.lists(m_message, min_size=1, max_size=3)},
    {"system": st.text(max_size=5) | st.lists(m_block, max_size=2), "stream": st.booleans(),
     "tools": st.lists(m_tool, max_size=2),
     "tool_choice": shaped({"type": st.sampled_from(["auto", "any", "tool", "none"])},
                           {"name": names, "disable_parallel_tool_use": st.booleans()}),
     "temperature": st.floats(-1, 3), "top_p": st.floats(-1, 2), "top_k": st.integers(-1, 50),
     "stop_sequences": st.lists(st.text(max_size=3), max_size=2),
     "metadata": shaped({}, {"user_id": st.text(max_size=4)}),
     "output_format": shaped({"type": st.just("json_schema")}, {"schema": schema}),
     "thinking": anything},
)  # fmt: skip
# -- OpenAI Responses
r_part = st.one_of(
    shaped({"type": st.sampled_from(["input_text", "output_text"]), "text": st.text(max_size=4)},
           {}),
    shaped({"type": st.just("input_image")}, {"image_url": st.text(max_size=6),
                                               "detail": st.just("auto")}),
    shaped({"type": st.sampled_from(["input_file", "refusal", "x"])}, {}),
)  # fmt: skip
r_item = st.one_of(
    shaped({"role": st.sampled_from(["user", "assistant", "system", "developer", "x"]),
            "content": st.text(max_size=4) | st.lists(r_part, max_size=2)},
           {"type": st.just("message")}),
    shaped({"type": st.sampled_from(["function_call", "custom_tool_call"]),
            "call_id": st.text(max_size=4), "name": names},
           {"arguments": st.text(max_size=6), "input": st.text(max_size=4),
            "namespace": st.text(max_size=3)}),
    shaped({"type": st.sampled_from(["function_call_output", "custom_tool_call_output"]),
            "call_id": st.text(max_size=4), "output": st.text(max_size=4)}, {}),
    shaped({"type": st.sampled_from(["reasoning", "item_reference", "x"])}, {}),
)  # fmt: skip
r_tool = st.one_of(
    shaped({"type": st.just("function"), "name": names},
           {"parameters": schema, "strict": st.booleans(), "description": st.text(max_size=3)}),
    shaped({"type": st.just("custom"), "name": names}, {"format": anything}),
    shaped({"type": st.just("namespace"), "name": names},
           {"tools": st.lists(shaped({"type": st.just("function"), "name": names},
                                     {"parameters": schema}), max_size=2)}),
    shaped({"type": st.sampled_from(["web_search", "file_search", "x"])}, {}),
)  # fmt: skip
r_body = shaped(
    {"model": st.just("m"),
     "input": st.text(max_size=5) | st.lists(r_item, min_size=1, max_size=3)},
    {"instructions": st.text(max_size=4), "stream": st.booleans(), "store": st.booleans(),
     "tools": st.lists(r_tool, max_size=2),
     "tool_choice": st.sampled_from(["auto", "none", "required"])
     | shaped({"type": st.sampled_from(["function", "allowed_tools", "custom"])},
              {"name": names, "mode": st.just("auto"), "tools": st.lists(anything, max_size=2)}),
     "parallel_tool_calls": st.booleans(), "max_output_tokens": st.integers(-1, 100),
     "temperature": st.floats(-1, 3), "top_p": st.floats(-1, 2),
     "text": shaped({}, {"format": shaped({"type": st.sampled_from(["text", "json_schema",
                                                                     "json_object"])},
                                          {"name": names, "schema": schema,
                                           "strict": st.booleans()})}),
     "reasoning": anything, "user": st.text(max_size=3),
     "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
     "previous_response_id": st.text(max_size=3), "truncation": anything},
)  # fmt: skip


def translated_or_400(translate: Any, body: Any) -> None:
    try:
        out = translate(body)
    except GatewayError as err:
        assert err.status == 400, err
        return
    json.dumps(out.chat)  # what is sent on is JSON


@settings(max_examples=400, deadline=None)
@given(m_body)
def test_any_messages_body_translates_or_is_a_400(body: Any) -> None:
    translated_or_400(mreq.request_to_chat, body)


@settings(max_examples=400, deadline=None)
@given(r_body)
def test_any_responses_body_translates_or_is_a_400(body: Any) -> None:
    translated_or_400(rreq.request_to_chat, body)


@pytest.mark.parametrize("translate", [mreq.request_to_chat, rreq.request_to_chat])
def test_the_strategies_reach_a_translation(translate: Any) -> None:
    """Not only refusals: the plainest body of each translates."""
    body = ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            if translate is mreq.request_to_chat else {"model": "m", "input": "hi"})  # fmt: skip
    assert translate(body).chat["messages"][-1]["content"] == "hi"
