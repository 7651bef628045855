"""The chat request schema of ``/openapi.json``, with the fields the gateway
itself checks spelled out (``required`` matches :mod:`ails.server.validation`)."""

from __future__ import annotations

from typing import Any

from ails.server.openapi.common import passed_on, ref


def chat_request_schema(max_messages: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,
        "description": (
            "An OpenAI chat completion request. The fields below are checked by the gateway; "
            "any other field is passed on to the backend untouched."
        ),
        # The signed protocol: d, t and s come together, and the signature covers
        # text (every message's content text here; the gateway itself needs the last).
        "dependentRequired": {"d": ["t", "s"], "t": ["d", "s"], "s": ["d", "t"]},
        "if": {"required": ["t"]},
        "then": {
            "properties": {
                "messages": {"items": {"properties": {"content": {"type": ["string", "null"]}}}}
            }
        },
        "properties": {
            "model": {
                "type": "string",
                "minLength": 1,
                "description": "A model name listed by GET /v1/models (an alias included).",
            },
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_messages,
                "items": ref("Message"),
            },
            "stream": {"type": "boolean", "default": False},
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": ["boolean", "null"]}},
                "additionalProperties": True,
            },
            "max_tokens": {"type": ["integer", "null"], "minimum": 1},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "n": {"type": ["integer", "null"], "minimum": 1},
            "stop": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "null"},
                ]
            },
            "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
            # Not checked here: passed on, and the backend says what it accepts.
            "seed": passed_on("An integer for reproducible sampling."),
            "user": passed_on("An id of the end user."),
            "tools": passed_on("Function tools the model may call (an array)."),
            "tool_choice": passed_on('"none", "auto", "required" or a named tool.'),
            "response_format": passed_on('E.g. {"type": "json_object"}.'),
            "d": {
                "type": "string",
                "format": "date",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "description": "Signed protocol: the client's date. A body with any of d, t, s "
                "is verified (ails-protocol) and needs all three and text content in its "
                "messages; the three fields are removed before routing.",
            },
            "t": {
                "type": "string",
                "pattern": "^[0-9]*[13579]$",
                "maxLength": 20,
                "description": "Signed protocol: Unix milliseconds, last digit made odd.",
            },
            "s": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": 'Signed protocol: sha256_hex("{t}:{m}:{K}:{len(m)}").',
            },
        },
    }
