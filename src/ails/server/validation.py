"""Checks of the fields the gateway itself acts on, not the whole OpenAI schema.

Everything else in a request passes through to the backend, which validates
what it knows. The messages mimic OpenAI's own, and each refusal names the
``param`` at fault, so the SDK's ``BadRequestError.param`` points at it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ails.server.errors import GatewayError
from ails.signing import has_signature_fields


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _bad_type(param: str, expected: str, value: Any) -> GatewayError:
    return GatewayError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        code="invalid_type",
        param=param,
    )


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_type(name, "a number", value)
    if not low <= value <= high:
        raise GatewayError(
            400,
            f"Invalid '{name}': expected a value between {low:g} and {high:g}, got {value}.",
            code="invalid_value",
            param=name,
        )


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, float) and value.is_integer():
        # JSON Schema's "integer" is any number without a fraction: 1e3 and
        # 1000.0 are 1000. Passed on as the integer, which every backend takes.
        value = body[name] = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_type(name, "an integer", value)
    if value < 1:
        raise GatewayError(
            400,
            f"Invalid '{name}': expected at least 1, got {value}.",
            code="invalid_value",
            param=name,
        )


def validate(body: dict[str, Any], *, max_messages: int) -> tuple[str, bool, bool]:
    """Check the fields the gateway acts on; return ``(model, stream, include_usage)``."""
    model = body.get("model")
    if type(model) is not str or not model:  # the usual one passes without a call
        model = _model(body)  # raises the 400 that says why
    messages = body.get("messages")
    if messages is None:
        raise GatewayError(
            400,
            "Missing required parameter: 'messages'.",
            code="missing_required_parameter",
            param="messages",
        )
    if not isinstance(messages, list):
        raise _bad_type("messages", "an array", messages)
    if not messages:
        raise GatewayError(
            400,
            "'messages' must hold at least one message.",
            code="empty_array",
            param="messages",
        )
    if len(messages) > max_messages:
        raise GatewayError(
            400,
            f"too many messages: {len(messages)}; this gateway takes at most {max_messages}.",
            code="too_many_messages",
            param="messages",
        )
    # The same tests as _refuse_message's (which finds the index, for a
    # refusal only: an enumerate costs more than the rest of this loop).
    for message in messages:
        if not isinstance(message, dict):
            _refuse_message(messages)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            _refuse_message(messages)
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            _refuse_message(messages)
    # Checked only when present: most bodies carry few of these, and a call
    # that finds nothing is most of what validation costs per request. A body
    # of two fields has only ``model`` and ``messages`` (both there by now).
    if len(body) == 2:
        return model, False, False
    stream, include_usage = (
        _stream_flags(body) if "stream" in body or "stream_options" in body else _NO_STREAM
    )
    if not _SAMPLED.isdisjoint(body):
        _positive_int(body, "max_completion_tokens")
        _sampling(body)
    return model, stream, include_usage


_NO_STREAM = (False, False)
#: The fields of :func:`_sampling`, and ``max_completion_tokens``.
_SAMPLED = frozenset({"max_completion_tokens", "max_tokens", "n", "temperature", "top_p", "stop"})


def _refuse_message(messages: list[Any]) -> NoReturn:
    """The 400 for the first message that is not an object with a role and,
    when it has content, a string or a list of parts."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            if role is None:
                raise GatewayError(
                    400,
                    f"Missing required parameter: 'messages[{i}].role'.",
                    code="missing_required_parameter",
                    param=f"messages[{i}].role",
                )
            if role == "":
                raise GatewayError(
                    400,
                    f"'messages[{i}].role' must not be empty.",
                    code="invalid_value",
                    param=f"messages[{i}].role",
                )
            raise _bad_type(f"messages[{i}].role", "a string", role)
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad_type(f"messages[{i}].content", "a string or an array of parts", content)
    raise AssertionError("no message to refuse")  # pragma: no cover


def validate_completions(body: dict[str, Any]) -> tuple[str, bool, bool]:
    """A legacy text completion (``POST /v1/completions``): the same checks,
    with ``prompt`` (OpenAI's four forms) in place of ``messages``."""
    model = _model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise GatewayError(
            400,
            "Missing required parameter: 'prompt'.",
            code="missing_required_parameter",
            param="prompt",
        )
    if isinstance(prompt, list):  # token ids written as 2.0 are the integer 2
        prompt = body["prompt"] = [_integral(p) for p in prompt]
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list)
        and prompt
        and (
            all(isinstance(p, str) for p in prompt)
            or all(_token_id(t) for t in prompt)
            or all(isinstance(p, list) and p and all(_token_id(t) for t in p) for p in prompt)
        )
    ):
        raise _bad_type(
            "prompt",
            "a string, an array of strings, an array of token ids or an array of such arrays",
            prompt,
        )
    stream, include_usage = _stream_flags(body)
    _positive_int(body, "best_of")
    _sampling(body)
    return model, stream, include_usage


def _integral(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _token_id(value: Any) -> bool:
    return type(value) is int and value >= 0


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise GatewayError(
            400,
            "Missing required parameter: 'model'.",
            code="missing_required_parameter",
            param="model",
        )
    if not isinstance(model, str):
        raise _bad_type("model", "a string", model)
    if not model:
        raise GatewayError(400, "'model' must not be empty.", code="invalid_value", param="model")
    return model


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _bad_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _bad_type("stream_options", "an object", options)
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _bad_type("stream_options.include_usage", "a boolean", usage)
        include_usage = usage is True
    return stream, include_usage


def _sampling(body: dict[str, Any]) -> None:
    _positive_int(body, "max_tokens")
    _positive_int(body, "n")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _bad_type("stop", "a string or an array of strings", stop)


def refuse_signed(body: dict[str, Any]) -> None:
    """The signed protocol lives on /v1/chat/completions only: a body with
    ``d``/``t``/``s`` on another endpoint is a 400."""
    if has_signature_fields(body):
        raise GatewayError(
            400,
            "signed requests (d, t, s) are accepted on /v1/chat/completions only",
            code="signature_malformed",
        )


def cap_tokens(body: dict[str, Any], cap: int) -> None:
    """``--max-tokens-cap``: lower the limit the client gave, or set one.

    Newer clients send only ``max_completion_tokens`` (some models require it
    instead of ``max_tokens``), so that one is lowered when present.
    """
    if isinstance(body.get("max_completion_tokens"), int):
        body["max_completion_tokens"] = min(cap, body["max_completion_tokens"])
        if isinstance(body.get("max_tokens"), int):
            body["max_tokens"] = min(cap, body["max_tokens"])
    elif not isinstance(body.get("max_tokens"), int) or body["max_tokens"] > cap:
        body["max_tokens"] = cap


__all__ = ["cap_tokens", "refuse_signed", "validate", "validate_completions"]
