"""Schemathesis hooks for fuzzing ``ails serve`` (tests/test_fuzz_openapi.py).

Loaded by the schemathesis command through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``:

* half the generated chat bodies name a model the gateway serves, so that
  generated requests also get past the model lookup to the upstream and back
  (a random name is a 404 before any of that). Only a valid name (a non-empty
  string) is swapped, for another valid one: a body generated to be invalid
  stays invalid;
* one more check, run on every answer (``dialect_shaped``): each in its API's
  own shape. An error is an OpenAI error object, except on Anthropic's
  Messages API (``{"type": "error", "error": {...}}``); a 200 is a
  ``chat.completion``/``text_completion`` or an event stream that ends with
  ``[DONE]``; a Messages stream is named events from ``message_start`` to
  ``message_stop`` (or an ``error`` event), never ``[DONE]``; a Responses
  stream runs from ``response.created`` to ``response.completed`` (or
  ``.incomplete``/``.failed``), its sequence numbers in order; no answer
  holds a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import schemathesis
from hypothesis import strategies as st
from hypothesis.internal import lambda_sources

# CPython 3.11 before 3.11.9 (gh-106905): once a RecursionError has been caught,
# a later ast.parse (Hypothesis reads lambdas' source for its reprs) can fail with
# "SystemError: AST constructor recursion depth mismatch", and schemathesis
# reports that as a runtime error of the run. Deep schemas (the chat request's
# nested content parts) recurse far in its strategy code: room enough keeps the
# first RecursionError from happening at all.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
# The limit alone is not enough since the document describes the Messages and
# Responses APIs too (their nested content blocks): the failing ast.parse only
# describes a lambda for a repr, so a description it cannot make is "lambda".
_describe = lambda_sources.lambda_description


def _lambda_description(f: Any) -> str:
    try:
        return str(_describe(f))
    except SystemError:  # gh-106905, not the gateway's fault
        return "lambda: <unknown>"


lambda_sources.lambda_description = _lambda_description

#: The model the test upstream serves (the fuzz test lists only this one).
SERVED_MODEL = "test-model"


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
        return st.sampled_from([body, {**body, "model": SERVED_MODEL}])
    return st.just(body)


def _error_object(data: Any) -> None:
    assert isinstance(data, dict) and set(data) == {"error"}, f"not an OpenAI error: {data!r}"
    err = data["error"]
    assert isinstance(err, dict), f"error is not an object: {err!r}"
    assert set(err) == {"message", "type", "code", "param"}, f"error fields: {sorted(err)}"
    assert isinstance(err["message"], str) and err["message"], "error.message is empty"
    assert isinstance(err["type"], str) and err["type"], "error.type is empty"
    assert err["code"] is None or isinstance(err["code"], str), "error.code is not a string"
    assert err["param"] is None or isinstance(err["param"], str), "error.param is not a string"
    assert "Traceback" not in err["message"], "a traceback in an error message"


def _event_stream(text: str, kind: str) -> None:
    assert text.endswith("data: [DONE]\n\n"), f"stream does not end with [DONE]: {text[-200:]!r}"
    for block in text.split("\n\n")[:-2]:
        assert block.startswith("data: ") and "\n" not in block, f"not one data line: {block!r}"
        event = json.loads(block[len("data: ") :])
        assert isinstance(event, dict), f"event is not an object: {event!r}"
        if "error" in event:
            _error_object(event)
        else:
            assert event.get("object") == kind, f"not a {kind}: {event!r}"


def _anthropic_error(data: Any) -> None:
    assert isinstance(data, dict) and set(data) == {"type", "error"}, f"not Anthropic's: {data!r}"
    assert data["type"] == "error", data
    err = data["error"]
    assert isinstance(err, dict) and set(err) == {"type", "message"}, f"error fields: {err!r}"
    assert isinstance(err["type"], str) and err["type"], "error.type is empty"
    assert isinstance(err["message"], str) and err["message"], "error.message is empty"


def _named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Frames of ``event: NAME`` and one ``data:`` line whose ``type`` is NAME."""
    assert "[DONE]" not in text, "a named-event stream ends without [DONE]"
    assert text.endswith("\n\n"), f"the stream ends mid-frame: {text[-200:]!r}"
    events = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: "), f"not a frame: {block!r}"
        assert lines[1].startswith("data: "), f"no data line: {block!r}"
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert isinstance(data, dict) and data.get("type") == name, f"type is not {name}: {data!r}"
        events.append((name, data))
    assert events, "an empty stream"
    return events


def _messages_answer(ctype: str, content: bytes) -> None:
    if ctype.startswith("text/event-stream"):
        events = _named_events(content.decode("utf-8"))
        assert events[0][0] == "message_start", events[0]
        if events[-1][0] == "error":
            _anthropic_error(events[-1][1])
        else:
            assert events[-1][0] == "message_stop", events[-1]
            assert "message_delta" in [name for name, _ in events]
    else:
        data = json.loads(content)
        assert data.get("type") == "message" and isinstance(data.get("content"), list), data


def _responses_answer(ctype: str, content: bytes) -> None:
    if ctype.startswith("text/event-stream"):
        events = _named_events(content.decode("utf-8"))
        assert events[0][0] == "response.created", events[0]
        last = events[-1][0]
        assert last in ("response.completed", "response.incomplete", "response.failed"), last
        numbers = [data.get("sequence_number") for _, data in events]
        assert numbers == sorted(numbers) and all(isinstance(n, int) for n in numbers), numbers
    else:
        data = json.loads(content)
        assert data.get("object") == "response" and isinstance(data.get("output"), list), data


def _openai_answer(path: str, ctype: str, content: bytes) -> None:
    kind = {"/v1/chat/completions": "chat.completion", "/v1/completions": "text_completion"}
    if path not in kind:
        return
    if ctype.startswith("text/event-stream"):
        chunk = "chat.completion.chunk" if path == "/v1/chat/completions" else "text_completion"
        _event_stream(content.decode("utf-8"), chunk)
    else:
        data = json.loads(content)
        assert isinstance(data, dict) and data.get("object") == kind[path], data
        assert isinstance(data.get("choices"), list), "an answer without choices"


@schemathesis.check
def dialect_shaped(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer in its API's own shape: errors are OpenAI error objects,
    except on Anthropic's Messages API; streams end as their clients expect
    ([DONE] for OpenAI's chat and text completions, message_stop or an error
    event for Messages, response.completed/incomplete/failed for Responses)."""
    ctype = response.headers.get("content-type", [""])[0]
    assert "Traceback" not in response.content.decode("utf-8", "replace"), "a traceback"
    anthropic = case.path.startswith("/v1/messages")
    if response.status_code >= 400:
        assert ctype.startswith("application/json"), f"error answered as {ctype!r}"
        error = json.loads(response.content)
        if anthropic:
            _anthropic_error(error)
        else:
            _error_object(error)
    elif case.path == "/v1/messages":
        _messages_answer(ctype, response.content)
    elif case.path == "/v1/messages/count_tokens":
        count = json.loads(response.content).get("input_tokens")
        assert isinstance(count, int) and count >= 0, response.content
    elif case.path == "/v1/responses" or (
        case.path == "/v1/responses/{id}" and case.method == "GET"
    ):
        _responses_answer(ctype, response.content)
    else:
        _openai_answer(case.path, ctype, response.content)
    return None
