"""Anthropic's Messages API in ``/openapi.json``: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``. The request schema states what the
translation (server/dialects/messages_request.py) checks, no more: any other
field is accepted and, when it does not change the answer, ignored. Errors are
Anthropic's ``{"type": "error", "error": {...}}``."""

from __future__ import annotations

from typing import Any

from ails.server.openapi.common import NOT_SIGNED, event_stream, json_operation, ref, refusals

_STREAM = (
    "A message object, or with stream: true an event stream of named events: "
    "message_start, content_block_start, content_block_delta (text_delta, "
    "input_json_delta), content_block_stop, message_delta (stop_reason, usage), "
    "message_stop, and ping while waiting; a failure after the stream started is an "
    "`error` event. There is no [DONE]."
)


def paths(*, max_body_bytes: int) -> dict[str, Any]:
    errors = refusals(max_body_bytes, "AnthropicError")
    auth = {
        "description": "Authentication by x-api-key or Authorization: Bearer, against the "
        "gateway's keys (both present and different: 401). anthropic-version and "
        "anthropic-beta are accepted; a query string such as ?beta=true is ignored."
    }
    return {
        "/v1/messages": json_operation(
            "createMessage",
            "Anthropic's Messages API over any backend (streamed when stream is true)",
            "MessagesRequest",
            {
                "description": _STREAM,
                "content": {
                    "application/json": {"schema": ref("AnthropicMessage")},
                    "text/event-stream": event_stream(
                        "One line of JSON whose type is the event's name.", named=True
                    ),
                },
            },
            errors,
            **auth,
        ),
        "/v1/messages/count_tokens": json_operation(
            "countMessageTokens",
            "The tokens a Messages request's prompt would use (an estimate where the "
            "backend has no tokenizer: header x-ails-token-count: estimate)",
            "CountTokensRequest",
            {
                "description": "The count.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["input_tokens"],
                            "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
                        }
                    }
                },
            },
            errors,
            **auth,
        ),
    }


def _block(kind: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", *required],
        "additionalProperties": True,  # cache_control marks and the like
        "properties": {"type": {"const": kind}, **properties},
    }


_TEXT = _block("text", ["text"], {"text": {"type": "string"}})
_TEXT_BLOCKS: dict[str, Any] = {"type": "array", "items": _TEXT}
_USER_BLOCKS = [
    _TEXT,
    _block(
        "tool_result",
        [],
        {"content": {"anyOf": [{"type": "string"}, _TEXT_BLOCKS]}},
    ),
]
_ASSISTANT_BLOCKS = [
    _TEXT,
    _block("tool_use", [], {}),  # id, name and input: taken as they come
]


def _message(role: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": role},
            "content": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": blocks}}]
            },
        },
    }


def _request(*, max_tokens_required: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", "messages", *(["max_tokens"] if max_tokens_required else [])],
        "additionalProperties": True,
        "properties": {
            "model": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        _message("user", _USER_BLOCKS),
                        _message("assistant", _ASSISTANT_BLOCKS),
                    ]
                },
            },
            # Optional fields: null is the same as absent.
            "system": {"anyOf": [{"type": "string"}, _TEXT_BLOCKS, {"type": "null"}]},
            "stream": {"type": ["boolean", "null"]},
            "temperature": {"type": ["number", "null"]},
            "top_p": {"type": ["number", "null"]},
            "top_k": {"type": ["integer", "null"]},
            "stop_sequences": {"type": ["array", "null"], "items": {"type": "string"}},
            "metadata": {"type": ["object", "null"]},
            "tools": {
                "type": ["array", "null"],
                "description": "Client tools; server tools (a type such as web_search_…) "
                "are left out and named in x-ails-dropped-tools.",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
            },
            "tool_choice": {
                "type": ["object", "null"],
                "required": ["type"],
                "description": "auto, any, none, or {type: tool, name} naming a tool.",
                "properties": {"type": {"enum": ["auto", "any", "none"]}},
            },
            **NOT_SIGNED,
        },
    }


def schemas() -> dict[str, Any]:
    return {
        "MessagesRequest": _request(max_tokens_required=True),
        "CountTokensRequest": _request(max_tokens_required=False),
        "AnthropicMessage": {
            "type": "object",
            "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
            "properties": {
                "id": {"type": "string"},
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": {"type": "string"},
                "content": {"type": "array", "items": {"type": "object"}},
                "stop_reason": {"type": ["string", "null"]},
                "usage": {
                    "type": "object",
                    "properties": {
                        "input_tokens": {"type": "integer"},
                        "output_tokens": {"type": "integer"},
                    },
                },
            },
        },
    }
