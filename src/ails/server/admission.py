"""One admission path for every endpoint: what a request must pass before a
backend is asked, in one order, written once.

content type -> the key, from the head alone when it decides (as OpenAI does,
and before a byte of the body is read) -> the body within its limit (a small
one for a keyless caller under ``--allow-signed``) -> JSON object -> who is
calling (a key or a signed client) -> the endpoint's own validation -> the
signature -> the model is served here -> the signed quota and replay cache
(only now: a request that cannot be served is not charged) -> the caller's
rate limit. Who is calling is established once (:class:`~ails.server.auth.Caller`)
and carried on: the rate limit charges it, the access log names it
(``request[CALLER]``). An endpoint (chat completions, embeddings, another
dialect) passes only its validation; what it does once admitted is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

import msgspec
from aiohttp import web

from ails.server.auth import ANYONE, Authenticator, Caller, Refund
from ails.server.body import read_body
from ails.server.errors import JSON_TYPE, GatewayError
from ails.server.ratelimit import Admission, RateLimiter
from ails.server.records import CALLER, CURRENT, RID
from ails.server.routing import GatewayRouter
from ails.signing import has_signature_fields

_decode = msgspec.json.decode

#: An endpoint's check of its body: ``(model, stream, include_usage)``, or a
#: :class:`GatewayError` (400) naming the field.
Validate = Callable[[dict[str, Any]], tuple[str, bool, bool]]


class Admitted(msgspec.Struct):
    """A request that passed: its body, caller, model, and the headers every
    answer to it carries (request id, overhead, rate-limit state). A struct:
    made in C, where a dataclass's ``__init__`` is a Python call per request."""

    body: dict[str, Any]
    caller: Caller
    model: str
    stream: bool
    include_usage: bool
    limits: Admission | None
    headers: dict[str, str]
    #: Gives an anonymous signed caller's quota unit back when the backend
    #: fails before any output (None: nothing was charged).
    refund: Refund | None = None


class AdmissionPipeline:
    def __init__(
        self,
        *,
        auth: Authenticator,
        router: GatewayRouter,
        limiter: RateLimiter | None,
        max_body_bytes: int,
        max_anonymous_body_bytes: int,
    ) -> None:
        self.auth = auth
        self.router = router
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.max_anonymous_body_bytes = min(max_anonymous_body_bytes, max_body_bytes)

    def caller(self, request: web.Request) -> Caller:
        """Who calls an endpoint without a body (``GET /v1/models``)."""
        caller = self.auth.identify(request)
        request[CALLER] = caller
        return caller

    async def admit(self, request: web.Request, validate: Validate) -> Admitted:
        # The usual cases are tested here, in line, and the helpers called only
        # for the rest: each call is a Python frame, on every request.
        started = perf_counter()
        if request.headers.get("Content-Type") != JSON_TYPE:  # the usual header, as it is
            check_json_type(request)
        # The key next, from the head alone, before a byte of the body is read
        # (as OpenAI does); the key is checked once, here.
        head = self.auth.identify_head(request)
        if head is None:
            raw = await read_body(request, self.max_anonymous_body_bytes, anonymous=True)
        else:
            raw = await read_body(request, self.max_body_bytes)
        try:
            body = _decode(raw)
        except Exception:
            body = json_object(raw)  # says why it is not JSON (a 400)
        if type(body) is not dict:
            body = json_object(raw)  # a 400: not an object
        signed = has_signature_fields(body)
        caller = ANYONE
        if not signed:
            caller = head if head is not None else self.auth.identify(request)  # 401
            request[CALLER] = caller
        model, stream, include_usage = validate(body)
        signed_caller = self.auth.verify_signed(request, body) if signed else None
        if signed_caller is not None:
            caller = signed_caller.caller
            request[CALLER] = caller
        record = CURRENT.get()
        if record is not None:  # for the metrics and the access log
            record.model = model
            record.caller = caller
        served = self.router.served_name(model)  # serves(model), and the metrics' label
        if served is None:
            if not await self.router.knows(model):
                raise self.router.not_served(model)  # 404, or 503 while a list is missing
            served = self.router.served_name(model)
        if record is not None:
            record.label = served
        # Charged only now that the request can be served (an anonymous signed
        # caller's quota), and given back if the backend fails before any output.
        refund = await self.auth.admit_signed(signed_caller) if signed_caller else None
        limits = await self.limiter.admit(caller) if self.limiter is not None else None
        if limits is not None and limits.requests is not None:
            # A request the backend fails before any output costs no rpm unit either.
            key, window = limits.request_counter()
            refund = refund.also(key, window) if refund else Refund(self.auth.store, key, window)
        headers = {
            "x-request-id": request[RID],
            "x-ails-overhead-ms": f"{(perf_counter() - started) * 1000:.3f}",
        }
        if limits is not None:
            headers.update(limits.headers())
        return Admitted(body, caller, model, stream, include_usage, limits, headers, refund)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request's body as a JSON object, or the 400 that says why it is not."""
    try:
        body = _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise GatewayError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    except RecursionError:
        raise GatewayError(400, "the JSON body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def check_json_type(request: web.Request) -> None:
    ctype = request.headers.get("Content-Type")
    if ctype == JSON_TYPE:  # the usual header, as it is: nothing to parse
        return
    # No type is refused too: a browser sends a cross-site POST without a
    # preflight only as a form, text/plain or with no type (docs/reliability.md).
    if ctype is None or ctype.partition(";")[0].strip().lower() != JSON_TYPE:
        raise GatewayError(
            415,
            f"the body must be JSON (Content-Type: application/json), not {ctype!r}",
            code="unsupported_media_type",
        )


__all__ = ["AdmissionPipeline", "Admitted", "Validate", "check_json_type", "json_object"]
