"""The request parameters of the embedded model: OpenAI's names, checked, turned
into the runtime's request.

Every parameter of OpenAI's Chat Completions reference has a place here:

- :data:`HONOURED`: the runtime does what it says (sampling, limits, logprobs,
  structured output, tools, ``n``), plus ``top_k``, not OpenAI's but the
  runtime's and Anthropic's (the gateway's Messages dialect passes it on);
- :data:`IGNORED`: accepted and ignored, as OpenAI-compatible servers do,
  because they do not change what the answer means (``user``, ``metadata``,
  ``store``, ``service_tier``, ``reasoning_effort``…);
- :data:`NO_OP_ONLY`: refused unless at the value that asks for nothing (audio
  output, web search, the old ``functions``), because ignoring them would give
  an answer other than the one asked for.

Any other name (a typo such as ``temprature``) is a 400
``unsupported_parameter`` with ``param`` set to the name. Values are checked
with OpenAI's messages; image, audio and file parts are a 400
``unsupported_content`` naming the part.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import msgspec

from ails.errors import BadRequest
from ails.local.schema import check_schema
from ails.local.tools import ToolPlan, json_schema_format, parse_tools, plan_tools

HONOURED = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
        "stream",
        "stream_options",
    }
)
IGNORED = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "reasoning_effort",
        "verbosity",
        "prediction",
    }
)
#: name -> (is this value a no-op?, why anything else is refused)
NO_OP_ONLY: dict[str, tuple[Any, str]] = {
    "modalities": (
        lambda v: v in (["text"], []),
        "the embedded model answers in text only",
    ),
    "audio": (lambda v: not v, "the embedded model answers in text only"),
    "web_search_options": (lambda v: not v, "the embedded model cannot search the web"),
    "moderation": (lambda v: not v, "the embedded model runs no moderation"),
    "functions": (lambda v: not v, "'functions' is deprecated: send 'tools' instead"),
    "function_call": (
        lambda v: v in ("none", "auto"),
        "'function_call' is deprecated: send 'tool_choice' instead",
    ),
}
KNOWN = HONOURED | IGNORED | frozenset(NO_OP_ONLY) | {"model", "messages"}
#: Content parts the model cannot read (it reads text only).
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file", "image", "audio", "input_image"})
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


@dataclass(frozen=True)
class Plan:
    """One request, checked: the runtime's request for one choice, and how to run it."""

    body: dict[str, Any]
    n: int
    seed: int | None
    include_usage: bool
    #: None: a plain answer; else what the answer may do with the tools.
    tools: ToolPlan | None
    #: ``logprobs`` without ``top_logprobs``: the runtime's one alternative is dropped.
    empty_top_logprobs: bool

    def choice_body(self, i: int, **extra: Any) -> bytes:
        """The runtime request of choice ``i``: with a seed, choice i uses seed + i."""
        body = {**self.body, **extra}
        if self.seed is not None:
            body["seed"] = self.seed + i
        try:
            return _encode(body)
        except (TypeError, msgspec.EncodeError) as exc:
            raise _bad(f"the request cannot be encoded as JSON: {exc}", None) from None


def _bad(message: str, param: str | None, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, status=400, provider="local", code=code, param=param)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for cls, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number")):
        if isinstance(value, cls):
            return name
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _type_error(name: str, expected: str, value: Any) -> BadRequest:
    return _bad(
        f"Invalid type for '{name}': expected {expected}, but got {_kind(value)} instead.",
        name,
        "invalid_type",
    )


def _number(params: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(name, "a number", value)
    if not low <= value <= high:
        raise _bad(f"Invalid '{name}': expected a value between {low:g} and {high:g}.", name)
    return value


def _integer(params: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer", value)
    if value < low or (high is not None and value > high):
        top = f" and at most {high}" if high is not None else ""
        raise _bad(f"Invalid '{name}': expected at least {low}{top}, got {value}.", name)
    return value


def check_names(params: dict[str, Any]) -> None:
    """Refuse names outside OpenAI's reference, and reference names ails cannot honour
    unless they are at their no-op value."""
    for name, value in params.items():
        if name in KNOWN and name not in NO_OP_ONLY:
            continue
        if name in NO_OP_ONLY:
            is_no_op, why = NO_OP_ONLY[name]
            if value is None or is_no_op(value):
                continue
            raise _bad(f"'{name}' is not supported: {why}.", name, "unsupported_parameter")
        close = difflib.get_close_matches(name, sorted(KNOWN), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise _bad(
            f"Unrecognized request argument supplied: '{name}'. The embedded model takes "
            f"the parameters of OpenAI's Chat Completions API.{hint}",
            name,
            "unsupported_parameter",
        )


def check_messages(messages: Any) -> None:
    """Text only: media parts are refused by position; tool-call arguments must be JSON."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _type_error(f"messages[{i}]", "an object", message)
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _check_part(part, f"messages[{i}].content[{j}]")
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise _type_error(f"messages[{i}].tool_calls", "an array", calls)
            for j, call in enumerate(calls):
                _check_call(call, f"messages[{i}].tool_calls[{j}]")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise _type_error(where, "an object", part)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise _type_error(f"{where}.type", "a string", kind)
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise _type_error(f"{where}.text", "a string", part.get("text"))
        return
    if kind in _MEDIA_PARTS:
        raise _bad(
            f"{where} is an {kind} part, but the embedded model reads text only; send text, "
            "or choose a model that reads images or audio.",
            where,
            "unsupported_content",
        )
    raise _bad(f"{where} has the type {kind!r}; the embedded model reads 'text' parts.", where)


def _check_call(call: Any, where: str) -> None:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad(f"'{where}' must have a function with a name", where)
    arguments = fn.get("arguments")
    try:  # the chat template renders them as JSON; the runtime refuses anything else
        ok = isinstance(arguments, str) and isinstance(_decode(arguments), dict)
    except msgspec.DecodeError:
        ok = False
    if not ok:
        raise _bad(
            f"'{where}.function.arguments' must be a JSON object as a string",
            f"{where}.function.arguments",
        )


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The schema a ``response_format`` asks for; None for plain text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise _type_error("response_format", "an object", response_format)
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":  # any JSON object (what clients of JSON mode parse)
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise _type_error("response_format.json_schema", "an object", spec)
        schema = spec.get("schema", {})
        check_schema(schema, param="response_format.json_schema.schema")
        return schema if isinstance(schema, dict) else {}
    raise _bad(
        f"Invalid 'response_format.type': {kind!r}; expected text, json_object or json_schema.",
        "response_format.type",
    )


def plan_request(messages: Any, params: dict[str, Any], *, slots: int) -> Plan:
    """Check a request (``params``: every parameter given, None meaning absent) and plan it.

    ``slots`` is the number of generations the runtime runs at once, the most
    choices one request may have.
    """
    params = {k: v for k, v in params.items() if v is not None}
    check_names(params)
    if isinstance(messages, list):  # ails.Message objects are welcome too
        messages = [
            msgspec.to_builtins(m) if isinstance(m, msgspec.Struct) else m for m in messages
        ]
    check_messages(messages)
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},  # the stream always ends with usage
    }
    for name, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("frequency_penalty", -2, 2),
        ("presence_penalty", -2, 2),
    ):
        if _number(params, name, low, high) is not None:
            body[name] = params[name]
    if _integer(params, "top_k", 0) is not None:  # 0: no limit, as in the runtime
        body["top_k"] = params["top_k"]
    limits = (_integer(params, k, 1) for k in ("max_tokens", "max_completion_tokens"))
    given = [v for v in limits if v is not None]
    if given:  # the same meaning; when both are sent, the smaller wins
        body["max_tokens"] = min(given)  # tokens: the runtime's n_predict
    stop = params.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _type_error("stop", "a string or an array of strings", stop)
        if any(stops):
            body["stop"] = [s for s in stops if s]
    seed = _integer(params, "seed", -(2**63))
    body.update(_logit_bias(params.get("logit_bias")))
    logprobs = params.get("logprobs", False)
    if not isinstance(logprobs, bool):
        raise _type_error("logprobs", "a boolean", logprobs)
    top = _integer(params, "top_logprobs", 0, 20)
    if top and not logprobs:
        raise _bad("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    if logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = top or 1
    n = _integer(params, "n", 1) or 1
    if n > slots:
        raise _bad(
            f"Invalid 'n': {n} choices, but the embedded model generates at most {slots} at "
            "once (raise the local provider's parallel setting, AILS_LOCAL_PARALLEL).",
            "n",
        )
    for name in ("parallel_tool_calls", "stream"):
        if name in params and not isinstance(params[name], bool):
            raise _type_error(name, "a boolean", params[name])
    options = params.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    schema = response_schema(params.get("response_format"))
    tool_plan = plan_tools(
        parse_tools(params.get("tools") or []), params.get("tool_choice"), schema
    )
    if tool_plan is not None:
        # The template renders the tools; the runtime neither parses nor constrains
        # calls itself (tools.py explains why).
        body["tools"] = params["tools"]
        body["tool_choice"] = "none"
    elif schema is not None:
        body["response_format"] = json_schema_format(schema)
    return Plan(
        body=body,
        n=n,
        seed=seed,
        include_usage=options.get("include_usage") is True,
        tools=tool_plan,
        empty_top_logprobs=logprobs and not top,
    )


def _logit_bias(value: Any) -> dict[str, Any]:
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise _type_error("logit_bias", "an object", value)
    for token, bias in value.items():
        if not (isinstance(token, str) and token.isdigit()):
            raise _bad(f"Invalid 'logit_bias': the key {token!r} is not a token id.", "logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise _bad(
                f"Invalid 'logit_bias': the bias of token {token} must be between -100 and 100.",
                "logit_bias",
            )
    return {"logit_bias": value}


__all__ = ["HONOURED", "IGNORED", "KNOWN", "NO_OP_ONLY", "Plan", "check_names", "plan_request"]
