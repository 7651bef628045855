"""``/openapi.json``: a hand-written OpenAPI 3.1 description of the gateway.

Written by hand, not generated, so that it says exactly what the handlers do:
the fields the gateway itself checks are spelled out (and ``required`` matches
the validation in :mod:`ails.server.app`); everything else is passed on to
the backend untouched, which ``additionalProperties: true`` says.
"""

from __future__ import annotations

from typing import Any

from ails.server.openapi_request import chat_request_schema as _chat_request
from ails.server.openapi_request import error_response_schema as _error
from ails.server.openapi_request import passed_on as _passed_on
from ails.server.openapi_request import ref as _ref

#: OpenAI's rate-limit headers, sent for keys that have limits (server/ratelimit.py).
_RATE_HEADERS: dict[str, Any] = {
    f"x-ratelimit-{what}-{unit}": {"schema": {"type": "string"}}
    for what in ("limit", "remaining", "reset")
    for unit in ("requests", "tokens")
}


def openapi_document(
    *,
    version: str,
    max_messages: int = 2048,
    max_body_bytes: int = 4 * 1024 * 1024,
    keyed: bool = False,
    allow_signed: bool = False,
) -> dict[str, Any]:
    """The document, with this gateway's limits and authentication filled in:
    ``keyed`` when API keys are configured, ``allow_signed`` when a signed body
    needs no key."""
    # Every answer may be one of these refusals (server/security.py).
    guards = {
        "421": _error("The Host header names a host this gateway does not answer to."),
    }
    key: list[dict[str, list[str]]] = [{"bearerAuth": []}] if keyed else [{}]
    chat_errors = {
        **guards,
        "400": _error(
            "Invalid JSON, a wrong type, a missing field, too many messages, "
            "or a malformed signed body."
        ),
        "401": _error(
            "Missing or wrong API key; a signed body that is stale, replayed or "
            "wrongly signed (code signature_stale / signature_replayed / "
            "signature_invalid); anonymous signed requests not allowed."
        ),
        "404": _error("No backend serves this model."),
        "413": _error(f"The body is larger than {max_body_bytes} bytes."),
        "415": _error("The body is not application/json."),
        "429": {
            **_error(
                "A quota or the key's rate limit is spent (code rate_limit_exceeded), "
                "or the upstream is rate limited."
            ),
            "headers": {
                "retry-after": {
                    "schema": {"type": "integer"},
                    "description": "Seconds to wait before trying again.",
                },
                **_RATE_HEADERS,
            },
        },
        "502": _error("The upstream failed, was unreachable, or refused the gateway's key."),
        "503": _error(
            "The embedded model cannot be loaded, or the shared state (Redis) is "
            "unreachable and the gateway fails closed (code state_unavailable)."
        ),
        "504": _error("The upstream did not answer in time."),
    }
    common_headers = {
        "x-request-id": {
            "schema": {"type": "string"},
            "description": "The request's id (the client's own X-Request-Id when it sent a "
            "sane one), also written in the access log.",
        },
        "x-ails-overhead-ms": {
            "schema": {"type": "string"},
            "description": "Milliseconds the gateway spent before calling the backend.",
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ails gateway",
            "version": version,
            "description": (
                "An OpenAI-compatible chat completions gateway in front of upstream "
                "OpenAI-compatible servers and the embedded model. It also accepts the ails "
                "signed protocol. Errors are OpenAI error objects."
            ),
        },
        "servers": [{"url": "/"}],
        # Open when the gateway has no API key configured; otherwise a bearer key,
        # or (for chat completions, when allowed) a signed body.
        "security": key,
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "summary": "Create a chat completion (streamed when stream is true)",
                    "security": [{}, *key] if allow_signed else key,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ChatCompletionRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": (
                                "A chat.completion object, or with stream: true an event "
                                "stream: one `data: {chunk JSON}` line per chunk, ending with "
                                "`data: [DONE]`. A failure after the stream started is sent as "
                                '`data: {"error": {...}}` followed by `data: [DONE]`.'
                            ),
                            "headers": common_headers,
                            "content": {
                                "application/json": {"schema": _ref("ChatCompletion")},
                                "text/event-stream": {
                                    # Before OpenAPI 3.2 (itemSchema), the schema of an
                                    # event stream describes one event.
                                    "schema": {
                                        "type": "object",
                                        "required": ["data"],
                                        "properties": {
                                            "data": {
                                                "type": "string",
                                                "description": "One line of JSON: a "
                                                "ChatCompletionChunk (see components) or, "
                                                "after a failure, an Error; the last event "
                                                "is [DONE].",
                                            },
                                            "event": {"const": "message"},
                                        },
                                    }
                                },
                            },
                        },
                        **chat_errors,
                    },
                }
            },
            "/v1/embeddings": {
                "post": {
                    "operationId": "createEmbedding",
                    "summary": "Embeddings, passed through to a backend that serves them",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["model", "input"],
                                    "properties": {
                                        "model": {"type": "string", "minLength": 1},
                                        "input": {
                                            "anyOf": [
                                                {"type": "string", "minLength": 1},
                                                {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "items": {"type": "string"},
                                                },
                                                {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "items": {"type": "integer"},
                                                },
                                            ]
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The backend's own embeddings list, as it sent it.",
                            "headers": common_headers,
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
                        **chat_errors,
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "summary": "The models this gateway serves, aliases included",
                    "responses": {
                        "200": {
                            "description": "The model list.",
                            "content": {"application/json": {"schema": _ref("ModelList")}},
                        },
                        "401": _error("Missing or wrong API key."),
                        **guards,
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "operationId": "retrieveModel",
                    "summary": "One model this gateway serves (names may contain '/')",
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The model.",
                            "content": {"application/json": {"schema": _ref("Model")}},
                        },
                        "401": _error("Missing or wrong API key."),
                        "404": _error("No backend serves this model."),
                        **guards,
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: answers without contacting any backend",
                    "security": [{}],
                    "responses": {
                        "200": {
                            "description": "The gateway is up.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {"status": {"const": "ok"}},
                                    }
                                }
                            },
                        },
                        **guards,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [{}],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **guards,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer KEY, a key given to the gateway "
                    "with --api-key.",
                }
            },
            "schemas": {
                "ChatCompletionRequest": _chat_request(max_messages),
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
                        "name": _passed_on("The author's name."),
                        "tool_calls": _passed_on("Tool calls of an assistant message."),
                        "tool_call_id": _passed_on("The call a tool message answers."),
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
                        "choices": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "message": _ref("Message"),
                                    "finish_reason": {"type": ["string", "null"]},
                                },
                            },
                        },
                        "usage": _ref("Usage"),
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
                        "choices": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "delta": {"type": "object"},
                                    "finish_reason": {"type": ["string", "null"]},
                                },
                            },
                        },
                        "usage": {
                            "oneOf": [_ref("Usage"), {"type": "null"}],
                            "description": "Only with stream_options.include_usage: true, on "
                            "a last chunk whose choices are empty.",
                        },
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
                "Model": {
                    "type": "object",
                    "required": ["id", "object", "owned_by"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "model"},
                        "created": {"type": "integer"},
                        "owned_by": {
                            "type": "string",
                            "description": "The backend's display name "
                            "(upstream1, local, ...), never its URL.",
                        },
                    },
                },
                "ModelList": {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {
                        "object": {"const": "list"},
                        "data": {"type": "array", "items": _ref("Model")},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type", "code", "param"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "code": {"type": ["string", "null"]},
                                "param": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
            },
        },
    }


__all__ = ["openapi_document"]
