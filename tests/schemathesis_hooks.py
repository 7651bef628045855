"""Schemathesis hooks for fuzzing ``ails serve`` (tests/test_fuzz_openapi.py).

Loaded by the schemathesis command through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``:

* half the generated chat bodies name a model the gateway serves, so that
  generated requests also get past the model lookup to the upstream and back
  (a random name is a 404 before any of that). Only a valid name (a non-empty
  string) is swapped, for another valid one: a body generated to be invalid
  stays invalid;
* one more check, run on every answer: an error is an OpenAI error object,
  a 200 a ``chat.completion`` or an event stream that ends with ``[DONE]``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import schemathesis
from hypothesis import strategies as st

# CPython 3.11 before 3.11.9 (gh-106905): once a RecursionError has been caught,
# a later ast.parse (Hypothesis reads lambdas' source for its reprs) can fail with
# "SystemError: AST constructor recursion depth mismatch", and schemathesis
# reports that as a runtime error of the run. Deep schemas (the chat request's
# nested content parts) recurse far in its strategy code: room enough keeps the
# first RecursionError from happening at all.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))

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


def _event_stream(text: str) -> None:
    assert text.endswith("data: [DONE]\n\n"), f"stream does not end with [DONE]: {text[-200:]!r}"
    for block in text.split("\n\n")[:-2]:
        assert block.startswith("data: ") and "\n" not in block, f"not one data line: {block!r}"
        event = json.loads(block[len("data: ") :])
        assert isinstance(event, dict), f"event is not an object: {event!r}"
        if "error" in event:
            _error_object(event)
        else:
            assert event.get("object") == "chat.completion.chunk", f"not a chunk: {event!r}"


@schemathesis.check
def openai_shaped(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer is an OpenAI-style error or a valid completion (or model list)."""
    ctype = response.headers.get("content-type", [""])[0]
    if response.status_code >= 400:
        assert ctype.startswith("application/json"), f"error answered as {ctype!r}"
        _error_object(json.loads(response.content))
    elif case.path == "/v1/chat/completions":
        if ctype.startswith("text/event-stream"):
            _event_stream(response.content.decode("utf-8"))
        else:
            data = json.loads(response.content)
            assert isinstance(data, dict) and data.get("object") == "chat.completion", data
            assert isinstance(data.get("choices"), list), "a completion without choices"
    return None
