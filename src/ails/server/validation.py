"""Checks of the fields the gateway itself acts on, not the whole OpenAI schema.

Everything else in a request passes through to the backend, which validates
what it knows. The messages mimic OpenAI's own, and each refusal names the
``param`` at fault, so the SDK's ``BadRequestError.param`` points at it.
"""

from __future__ import annotations

from typing import Any

from ails.server.errors import GatewayError


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
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
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
    return model, stream, include_usage


__all__ = ["validate"]
