"""What the parts of ``/openapi.json`` share: references, error responses in
OpenAI's and Anthropic's shapes, the headers every answer carries, and the
shape of an operation with a JSON body."""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"

#: OpenAI's rate-limit headers, sent for keys that have limits (server/ratelimit.py).
RATE_HEADERS: dict[str, Any] = {
    f"x-ratelimit-{what}-{unit}": {"schema": {"type": "string"}}
    for what in ("limit", "remaining", "reset")
    for unit in ("requests", "tokens")
}

COMMON_HEADERS: dict[str, Any] = {
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


#: The signed protocol's fields, refused off /v1/chat/completions (400
#: signature_malformed): JSON Schema's ``false``, "must not be present".
NOT_SIGNED: dict[str, Any] = {"d": False, "t": False, "s": False}


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def error_response_schema(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def passed_on(description: str) -> dict[str, Any]:
    return {"description": f"{description} Passed on untouched; the backend validates it."}


def guards() -> dict[str, Any]:
    """The refusals any answer may be (server/security.py)."""
    return {
        "421": error_response_schema(
            "The Host header names a host this gateway does not answer to."
        )
    }


def refusals(max_body_bytes: int, schema: str = "Error") -> dict[str, Any]:
    """The refusals of an endpoint with a JSON body, in OpenAI's error shape
    (``Error``) or Anthropic's (``AnthropicError``, where a backend that is
    down is 529 ``overloaded_error`` rather than 502/503)."""

    def error(description: str) -> dict[str, Any]:
        return error_response_schema(description, schema)

    out = {
        **guards(),
        "400": error(
            "Invalid JSON, a wrong type, a missing field, too many messages, a prompt "
            "longer than the model's context (code context_length_exceeded), or a "
            "malformed signed body."
        ),
        "401": error(
            "Missing or wrong API key; a signed body that is stale, replayed or "
            "wrongly signed (code signature_stale / signature_replayed / "
            "signature_invalid); anonymous signed requests not allowed."
        ),
        "404": error("No backend serves this model (or this endpoint for it)."),
        "405": error("The path does not take this method."),
        "413": error(f"The body is larger than {max_body_bytes} bytes."),
        "415": error("The body is not application/json."),
        "429": {
            **error(
                "A quota or the key's rate limit is spent (code rate_limit_exceeded), "
                "or the upstream is rate limited."
            ),
            "headers": {
                "retry-after": {
                    "schema": {"type": "integer"},
                    "description": "Seconds to wait before trying again.",
                },
                **RATE_HEADERS,
            },
        },
        "504": error("The upstream did not answer in time."),
    }
    if schema == "AnthropicError":
        out["500"] = error(
            "api_error: the upstream refused the gateway's own key (its configuration, "
            "not the client's; a retry cannot help)."
        )
        out["529"] = error(
            "overloaded_error: the backend is down or unreachable, or the embedded "
            "model cannot be loaded (Anthropic's SDKs retry it)."
        )
    else:
        out["502"] = error("The upstream failed, was unreachable, or refused the gateway's key.")
        out["503"] = error(
            "The embedded model cannot be loaded, or the shared state (Redis) is "
            "unreachable and the gateway fails closed (code state_unavailable)."
        )
    return out


def json_operation(
    operation_id: str,
    summary: str,
    request_schema: str,
    ok: dict[str, Any],
    errors: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """``post`` of an endpoint that takes a JSON body."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            **extra,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(request_schema)}},
            },
            "responses": {"200": {**ok, "headers": COMMON_HEADERS}, **errors},
        }
    }


def event_stream(description: str, *, named: bool) -> dict[str, Any]:
    """One event of a ``text/event-stream`` answer (before OpenAPI 3.2's
    ``itemSchema``, the schema of an event stream describes one event)."""
    event: dict[str, Any] = {"type": "string"} if named else {"const": "message"}
    return {
        "schema": {
            "type": "object",
            "required": ["event", "data"] if named else ["data"],
            "properties": {"data": {"type": "string", "description": description}, "event": event},
        }
    }


def error_schemas() -> dict[str, Any]:
    return {
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
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
