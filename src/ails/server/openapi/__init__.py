"""``/openapi.json``: a hand-written OpenAPI 3.1 description of the gateway.

Written by hand, not generated, so that it says exactly what the handlers do:
the fields the gateway itself checks are spelled out (and ``required`` matches
the validation), everything else is passed on to the backend or translated,
which ``additionalProperties: true`` says. A field is typed here only where
the gateway refuses every other value, so that a fuzzer (tests/test_fuzz_openapi.py)
may take the document at its word both ways. One module per API: OpenAI's
(chat), Anthropic's Messages (messages), OpenAI's Responses (responses), and
the gateway's own (service).
"""

from __future__ import annotations

from typing import Any

from ails.server.openapi import chat, messages, responses, service
from ails.server.openapi.common import error_schemas


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
    key: list[dict[str, list[str]]] = [{"bearerAuth": []}] if keyed else [{}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ails gateway",
            "version": version,
            "description": (
                "An OpenAI-compatible gateway in front of upstream OpenAI-compatible servers "
                "and the embedded model, which also speaks Anthropic's Messages API and "
                "OpenAI's Responses API over every backend, and accepts the ails signed "
                "protocol on chat completions. Errors are OpenAI error objects, except on "
                "/v1/messages, where they are Anthropic's."
            ),
        },
        "servers": [{"url": "/"}],
        # Open when the gateway has no API key configured; otherwise a bearer key,
        # or (for chat completions, when allowed) a signed body.
        "security": key,
        "paths": {
            **chat.paths(key=key, allow_signed=allow_signed, max_body_bytes=max_body_bytes),
            **messages.paths(max_body_bytes=max_body_bytes),
            **responses.paths(max_body_bytes=max_body_bytes),
            **service.paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer KEY, a key given to the gateway "
                    "with --api-key (on /v1/messages also x-api-key: KEY).",
                }
            },
            "schemas": {
                **chat.schemas(max_messages),
                **messages.schemas(),
                **responses.schemas(),
                **service.schemas(),
                **error_schemas(),
            },
        },
    }


__all__ = ["openapi_document"]
