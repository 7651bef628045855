"""What wraps every request of the gateway: a request id, OpenAI-style bodies for
every refusal (aiohttp's own included), no traceback ever sent, one
``Authorization`` header at most, and one access log line that never holds a
header or the body (keys live there)."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ails.server.errors import GatewayError, error_response
from ails.server.records import note_refusal

log = logging.getLogger("ails.server")

_RID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RID_PREFIX = secrets.token_hex(10)
_rid_counter = itertools.count(1)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_error(exc: web.HTTPException, request: web.Request) -> GatewayError:
    """aiohttp's own refusals (no route, wrong method, too large) as OpenAI errors."""
    if exc.status == 404:
        return GatewayError(
            404,
            f"Unknown path: {request.method} {request.path}. "
            f"This gateway serves: {', '.join(_endpoints(request.app))}",
            code="unknown_url",
        )
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return GatewayError(
            405,
            f"{request.method} is not allowed on {request.path} (allowed: {allow})",
            code="method_not_allowed",
            headers={"Allow": allow} if allow else None,
        )
    if exc.status == 413:
        return GatewayError(413, "the request body is too large", code="body_too_large")
    return GatewayError(exc.status, exc.reason or "request refused")


def _endpoints(app: web.Application) -> list[str]:
    """``METHOD /path`` of every route, for the 404 of a path nobody serves."""
    seen: dict[str, None] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/v1/") or path in ("/health", "/ready", "/openapi.json", "/"):
            seen[f"{route.method} {path}"] = None
    return list(seen)


@web.middleware
async def request_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id")
    if rid is None or _RID_RE.fullmatch(rid) is None:
        # Unique, not secret: a random per-process prefix and a counter cost
        # far less than uuid4 (a system call for 16 random bytes) per request.
        rid = f"{_RID_PREFIX}{next(_rid_counter):012x}"
    request["rid"] = rid
    try:
        if len(request.headers.getall("Authorization", ())) > 1:
            # Which one counts differs between proxies and servers: trust neither.
            raise GatewayError(
                400,
                "the request has more than one Authorization header; send exactly one",
                code="duplicate_authorization",
            )
        resp = await handler(request)
    except GatewayError as err:
        note_refusal(err)
        return error_response(err, request_id=rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_error(exc, request), request_id=rid)
    except Exception:
        # Never a traceback to the client: the log has it, under the request id.
        log.exception("request %s: unexpected error", rid)
        return error_response(
            GatewayError(500, f"internal error (request id {rid})", code="internal_error"),
            request_id=rid,
        )
    if not resp.prepared:
        resp.headers["x-request-id"] = rid
    return resp


class AccessLogger(AbstractAccessLogger):
    """One line per request: client, method, path, status, duration, request id,
    and who called (``key:`` and the key's id: its ``[keys.NAME]`` name, else
    the first 8 hex digits of its digest; ``signed`` or ``open``). Never a
    header or the body (keys live there). ``--log-format json`` has its own
    (server/logformat.py)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        caller = request.get("caller")
        self.logger.info(
            "%s %s %s %d %.1fms rid=%s who=%s",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
            request.get("rid", "-"),
            caller.label() if caller is not None else "-",
        )


__all__ = ["AccessLogger", "request_middleware"]
