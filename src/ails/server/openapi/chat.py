"""OpenAI's endpoints in ``/openapi.json``: chat completions, legacy text
completions and embeddings, with their schemas."""

from __future__ import annotations

from typing import Any

from ails.server.openapi.chat_request import chat_request_schema
from ails.server.openapi.common import (
    NOT_SIGNED,
    event_stream,
    json_operation,
    passed_on,
    ref,
    refusals,
)

_CHAT_STREAM = (
    "A chat.completion object, or with stream: true an event stream: one "
    "`data: {chunk JSON}` line per chunk, ending with `data: [DONE]`. A failure after "
    'the stream started is sent as `data: {"error": {...}}` followed by `data: [DONE]`.'
)
_TEXT_STREAM = (
    "A text_completion object, or with stream: true an event stream of text_completion "
    "chunks (`choices[].text`), ending with `data: [DONE]`; a failure after the stream "
    'started is `data: {"error": {...}}` followed by `data: [DONE]`. An upstream\'s answer '
    "is passed on as it sent it; the embedded model completes the prompt natively."
)


def paths(
    *, key: list[dict[str, list[str]]], allow_signed: bool, max_body_bytes: int
) -> dict[str, Any]:
    errors = refusals(max_body_bytes)
    return {
        "/v1/chat/completions": json_operation(
            "createChatCompletion",
            "Create a chat completion (streamed when stream is true)",
            "ChatCompletionRequest",
            {
                "description": _CHAT_STREAM,
                "content": {
                    "application/json": {"schema": ref("ChatCompletion")},
                    "text/event-stream": event_stream(
                        "One line of JSON: a ChatCompletionChunk (see components) or, after "
                        "a failure, an Error; the last event is [DONE].",
                        named=False,
                    ),
                },
            },
            errors,
            security=[{}, *key] if allow_signed else key,
        ),
        "/v1/completions": json_operation(
            "createCompletion",
            "A legacy text completion (streamed when stream is true)",
            "CompletionRequest",
            {
                "description": _TEXT_STREAM,
                "content": {
                    "application/json": {"schema": ref("TextCompletion")},
                    "text/event-stream": event_stream(
                        "One line of JSON: a TextCompletion chunk or, after a failure, an "
                        "Error; the last event is [DONE].",
                        named=False,
                    ),
                },
            },
            errors,
        ),
        "/v1/embeddings": json_operation(
            "createEmbedding",
            "Embeddings, passed through to a backend that serves them",
            "EmbeddingRequest",
            {
                "description": "The backend's own embeddings list, as it sent it.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": {"type": "array"}},
                        }
                    }
                },
            },
            errors,
        ),
    }


_TOKEN_IDS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "integer", "minimum": 0},
}
_STOP: dict[str, Any] = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]
}


def _completion_request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": True,
        "description": (
            "An OpenAI legacy completion request. The fields below are checked by the "
            "gateway; any other field is passed on. The embedded model refuses echo, "
            "suffix, logprobs, best_of and n above 1, and several prompts (docs/local-model.md)."
        ),
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "prompt": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    _TOKEN_IDS,
                    {"type": "array", "minItems": 1, "items": _TOKEN_IDS},
                ]
            },
            "stream": {"type": ["boolean", "null"]},
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": ["boolean", "null"]}},
            },
            "max_tokens": {"type": ["integer", "null"], "minimum": 1},
            "n": {"type": ["integer", "null"], "minimum": 1},
            "best_of": {"type": ["integer", "null"], "minimum": 1},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "stop": _STOP,
            "seed": passed_on("An integer for reproducible sampling."),
            "echo": passed_on("Echo the prompt."),
            "suffix": passed_on("Text after the insertion."),
            "logprobs": passed_on("Log-probabilities of the top tokens."),
            **NOT_SIGNED,
        },
    }


def _embedding_request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                ]
            },
            **NOT_SIGNED,
        },
    }


def _choices(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "properties": item}}


def schemas(max_messages: int) -> dict[str, Any]:
    finish = {"type": ["string", "null"]}
    return {
        "ChatCompletionRequest": chat_request_schema(max_messages),
        "CompletionRequest": _completion_request(),
        "EmbeddingRequest": _embedding_request(),
        "Message": {
            "type": "object",
            "required": ["role"],
            "additionalProperties": True,
            "properties": {
                "role": {"type": "string", "minLength": 1},
                "content": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "array", "description": "Content parts, passed on."},
                        {"type": "null"},
                    ]
                },
                "name": passed_on("The author's name."),
                "tool_calls": passed_on("Tool calls of an assistant message."),
                "tool_call_id": passed_on("The call a tool message answers."),
            },
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "additionalProperties": True,
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": _choices(
                    {
                        "index": {"type": "integer"},
                        "message": ref("Message"),
                        "finish_reason": finish,
                    }
                ),
                "usage": ref("Usage"),
            },
        },
        "ChatCompletionChunk": {
            "type": "object",
            "required": ["object", "choices"],
            "additionalProperties": True,
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion.chunk"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": _choices(
                    {
                        "index": {"type": "integer"},
                        "delta": {"type": "object"},
                        "finish_reason": finish,
                    }
                ),
                "usage": {
                    "oneOf": [ref("Usage"), {"type": "null"}],
                    "description": "Only with stream_options.include_usage: true, on "
                    "a last chunk whose choices are empty.",
                },
            },
        },
        "TextCompletion": {
            "type": "object",
            "required": ["object", "choices"],
            "additionalProperties": True,
            "description": "A whole answer, or one chunk of a streamed one (same shape).",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "text_completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": _choices(
                    {
                        "index": {"type": "integer"},
                        "text": {"type": "string"},
                        "finish_reason": finish,
                    }
                ),
                "usage": ref("Usage"),
            },
        },
        "Usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    }
