"""The gateway's own endpoints in ``/openapi.json``: the model list, liveness,
readiness and the document itself."""

from __future__ import annotations

from typing import Any

from ails.server.openapi.common import error_response_schema, guards, ref


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def paths() -> dict[str, Any]:
    unkeyed = error_response_schema("Missing or wrong API key.")
    return {
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "The models this gateway serves, aliases included",
                "responses": {
                    "200": _json("The model list.", ref("ModelList")),
                    "401": unkeyed,
                    **guards(),
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "operationId": "retrieveModel",
                "summary": "One model this gateway serves (names may contain '/')",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json("The model.", ref("Model")),
                    "401": unkeyed,
                    "404": error_response_schema("No backend serves this model."),
                    **guards(),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: answers without contacting any backend",
                "security": [{}],
                "responses": {
                    "200": _json(
                        "The gateway is up.",
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                        },
                    ),
                    **guards(),
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: the backends are open and at least one model list is known",
                "security": [{}],
                "responses": {
                    "200": _json("Ready.", ref("Readiness")),
                    "503": {
                        **_json("Not ready yet (retry-after: 1).", ref("Readiness")),
                        "headers": {"retry-after": {"schema": {"type": "integer"}}},
                    },
                    **guards(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [{}],
                "responses": {
                    "200": _json("The OpenAPI 3.1 document.", {"type": "object"}),
                    **guards(),
                },
            }
        },
    }


def schemas() -> dict[str, Any]:
    return {
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
                "data": {"type": "array", "items": ref("Model")},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "waiting_for"],
            "properties": {
                "status": {"enum": ["ready", "not_ready"]},
                "waiting_for": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Backends whose model list is not known yet.",
                },
            },
        },
    }
