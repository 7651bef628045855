"""OpenAI's Responses API in ``/openapi.json``: ``POST /v1/responses`` and
``GET``/``DELETE /v1/responses/{id}``. The request schema states what the
translation (server/dialects/responses_request.py) checks, no more."""

from __future__ import annotations

from typing import Any

from ails.server.openapi.common import (
    COMMON_HEADERS,
    NOT_SIGNED,
    error_response_schema,
    event_stream,
    guards,
    json_operation,
    ref,
    refusals,
)

_STREAM = (
    "A response object, or with stream: true an event stream of named events, each "
    "with sequence_number: response.created, response.in_progress, "
    "response.output_item.added, response.content_part.added, "
    "response.output_text.delta/.done, response.content_part.done, "
    "response.function_call_arguments.delta/.done, response.output_item.done, then "
    "response.completed (or response.incomplete; response.failed after a failure). "
    "Hosted tools the backend cannot run are left out and named in x-ails-dropped-tools."
)


def paths(*, max_body_bytes: int) -> dict[str, Any]:
    stored = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "A response id; only the key that created it sees it.",
    }
    missing = error_response_schema("No stored response with this id for this key.")
    return {
        "/v1/responses": json_operation(
            "createResponse",
            "OpenAI's Responses API over any backend (streamed when stream is true)",
            "ResponseRequest",
            {
                "description": _STREAM,
                "content": {
                    "application/json": {"schema": ref("Response")},
                    "text/event-stream": event_stream(
                        "One line of JSON whose type is the event's name.", named=True
                    ),
                },
            },
            {
                **refusals(max_body_bytes),
                "404": error_response_schema(
                    "No backend serves this model, or previous_response_id names no "
                    "response of this key (code previous_response_not_found)."
                ),
            },
        ),
        "/v1/responses/{id}": {
            "get": {
                "operationId": "getResponse",
                "summary": "A stored response (kept for --responses-ttl seconds)",
                "parameters": [stored],
                "responses": {
                    "200": {
                        "description": "The response.",
                        "headers": COMMON_HEADERS,
                        "content": {"application/json": {"schema": ref("Response")}},
                    },
                    "401": error_response_schema("Missing or wrong API key."),
                    "404": missing,
                    **guards(),
                },
            },
            "delete": {
                "operationId": "deleteResponse",
                "summary": "Forget a stored response",
                "parameters": [stored],
                "responses": {
                    "200": {
                        "description": "Deleted.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "object", "deleted"],
                                    "properties": {
                                        "id": {"type": "string"},
                                        "object": {"const": "response.deleted"},
                                        "deleted": {"const": True},
                                    },
                                }
                            }
                        },
                    },
                    "401": error_response_schema("Missing or wrong API key."),
                    "404": missing,
                    **guards(),
                },
            },
        },
    }


_TEXT_PART: dict[str, Any] = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["input_text", "output_text"]}},
}
_ITEMS: list[dict[str, Any]] = [
    {
        "type": "object",
        "description": "A message (the type may be left out, as the Agents SDK does).",
        "required": ["role", "content"],
        "properties": {
            "type": {"const": "message"},
            # A system or developer message alone is not a turn: left out here.
            "role": {"enum": ["user", "assistant"]},
            "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]},
        },
    },
    {
        "type": "object",
        "required": ["type"],
        "description": "call_id, name and arguments (a JSON text) of an earlier call.",
        "properties": {"type": {"const": "function_call"}},
    },
    {
        "type": "object",
        "required": ["type"],
        "description": "The output of the call named by call_id.",
        "properties": {
            "type": {"const": "function_call_output"},
            "output": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]},
        },
    },
]


def _request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", "input"],
        "additionalProperties": True,
        "description": (
            "A Responses request. Also translated, and not described here: tools (function "
            "tools; a custom tool is a function with one string argument input; a "
            "namespace's tools are flattened as NAMESPACE__NAME; hosted tools such as "
            "web_search are left out and named in x-ails-dropped-tools, refused only when "
            "tool_choice forces one), tool_choice, text.format (text, json_object, "
            "json_schema). Other fields (include, reasoning, ...) are accepted and ignored."
        ),
        "properties": {
            "model": {"type": "string"},
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"anyOf": _ITEMS}},
                ]
            },
            "instructions": {"type": ["string", "null"]},
            "stream": {"type": ["boolean", "null"]},
            "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
            "temperature": {"type": ["number", "null"]},
            "top_p": {"type": ["number", "null"]},
            "parallel_tool_calls": {"type": ["boolean", "null"]},
            "metadata": {"type": ["object", "null"]},
            "store": {"description": "false: keep nothing for previous_response_id."},
            "previous_response_id": {
                "type": ["string", "null"],
                "description": "A stored response of this key to continue (404 "
                "previous_response_not_found otherwise).",
            },
            **NOT_SIGNED,
        },
    }


def schemas() -> dict[str, Any]:
    return {
        "ResponseRequest": _request(),
        "Response": {
            "type": "object",
            "required": ["id", "object", "status", "output"],
            "additionalProperties": True,
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "response"},
                "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
                "output": {"type": "array", "items": {"type": "object"}},
                "usage": {"type": ["object", "null"]},
            },
        },
    }
