"""Whatever a backend streams that decodes as chunks, every reader of chunks
takes without an exception, and the dialects still write well-formed frames.

A chunk's typed fields are checked when it is decoded (a wrong type there is
the provider's ``ProtocolError``, tests/test_client.py); its loose ones are
not: ``delta.tool_calls`` (a list of anything), ``logprobs``, and the values
of the typed ones (an index of -3 or 10**12, any finish reason). Here
hypothesis makes such chunks, as JSON that a backend could send, and feeds the
ones that decode to the library's join (``completion_from_chunks``), to the
Messages and Responses stream translations and to their whole-answer forms.
A malformed tool call once crashed both dialects mid-answer
(tests/test_gateway_dialects.py has that case through a real gateway).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ails.server.dialects import messages_stream as mout
from ails.server.dialects import responses_request as rreq
from ails.server.dialects import responses_stream as rout
from ails.types import Chunk, Completion, completion_from_chunks
from dialect_values import anything, sent_frames

_decode = msgspec.json.Decoder(Chunk, strict=False).decode

indexes = st.integers(0, 2) | st.integers(-(2**40), 2**40) | anything
texts = st.text(max_size=8) | st.sampled_from(["data: x", '"', "%d", "\n", "{"])
function = st.fixed_dictionaries(
    {}, optional={"name": texts | anything, "arguments": texts | anything}
)
call = st.fixed_dictionaries(
    {},
    optional={
        "index": indexes,
        "id": texts | anything,
        "type": st.just("function") | anything,
        "function": function | anything,
    },
)
delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": texts,
        "refusal": texts,
        "tool_calls": st.lists(call | anything, max_size=3) | anything,
    },
)
logprobs = (
    st.fixed_dictionaries({}, optional={"content": st.lists(anything, max_size=2) | anything})
    | anything
)
choice = st.fixed_dictionaries(
    {"delta": delta},
    optional={
        "index": indexes,
        "finish_reason": st.sampled_from(["stop", "length", "tool_calls", "x"]) | st.none(),
        "logprobs": logprobs,
    },
)
usage = st.fixed_dictionaries(
    {},
    optional={
        k: st.integers(-5, 2**40) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
)
chunk_json = st.fixed_dictionaries(
    {"choices": st.lists(choice, max_size=2)}, optional={"usage": usage, "error": anything}
)


def decoded(values: list[dict[str, Any]]) -> list[Chunk]:
    """The values that decode as chunks, as a provider would pass them on."""
    out = []
    for value in values:
        # Not one: the provider's ProtocolError, before any reader sees it.
        with contextlib.suppress(msgspec.ValidationError):
            out.append(_decode(json.dumps(value)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk_json, max_size=5))
def test_any_decoded_chunks_join_and_translate_without_an_exception(
    values: list[dict[str, Any]],
) -> None:
    chunks = decoded(values)
    joined = completion_from_chunks(chunks)
    for c in joined.choices:
        assert c.message.tool_calls is None or len(c.message.tool_calls) <= 1024
    messages = mout.MessageStream(model="m")
    events = messages.start()
    for chunk in chunks:
        events += messages.feed(chunk)
    events += messages.finish()
    sent = sent_frames(events)
    assert sent[0][0] == "message_start" and sent[-1][0] == "message_stop"
    assert all(data["type"] == name for name, data in sent)
    mout.completion_to_message(joined, model="m")
    request = rreq.request_to_chat({"model": "m", "input": "x"})
    response = rout.ResponseStream(request, created_at=0.0)
    events = response.start()
    for chunk in chunks:
        events += response.feed(chunk)
    events += response.finish()
    sent = sent_frames(events)
    assert sent[0][0] == "response.created"
    assert sent[-1][0] in ("response.completed", "response.incomplete")
    answer, _ = rout.completion_to_response(joined, request, created_at=0.0)
    assert json.loads(answer)["status"] in ("completed", "incomplete")


message = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={
        "content": texts | st.lists(anything, max_size=2),
        "tool_calls": st.lists(call | anything, max_size=3),
        "refusal": texts,
    },
)
completion_json = st.fixed_dictionaries(
    {
        "choices": st.lists(
            st.fixed_dictionaries(
                {"message": message},
                optional={
                    "index": indexes,
                    "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]),
                    "logprobs": logprobs,
                },
            ),
            max_size=2,
        )
    },
    optional={"usage": usage},
)
_decode_whole = msgspec.json.Decoder(Completion, strict=False).decode


@settings(max_examples=200, deadline=None)
@given(completion_json)
def test_any_decoded_whole_answer_translates_without_an_exception(value: dict[str, Any]) -> None:
    """The same for a whole (non-streamed) answer: its message's tool calls
    are as loose as a stream's."""
    try:
        whole = _decode_whole(json.dumps(value))
    except msgspec.ValidationError:
        return  # the provider's ProtocolError
    message_out = mout.completion_to_message(whole, model="m")
    assert all(block["type"] in ("text", "tool_use") for block in message_out["content"])
    msgspec.json.encode(message_out)
    request = rreq.request_to_chat({"model": "m", "input": "x"})
    answer, _ = rout.completion_to_response(whole, request, created_at=0.0)
    assert json.loads(answer)["object"] == "response"
