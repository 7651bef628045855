"""The gateway's aiohttp application: the endpoints and the streaming path.

A request is admitted by the one pipeline every endpoint shares
(server/admission.py: content type, size, JSON, the caller, the endpoint's own
validation, signature, model, rate limit), then handed to the library's
router. Everything else in the body is passed on untouched.

Streams are sent by server/stream_pump.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ails._version import __version__
from ails.errors import AilsError
from ails.server.admission import AdmissionPipeline
from ails.server.answer import JSONAnswer
from ails.server.auth import Authenticator, Refund
from ails.server.cache import ResponseCache, cache_key
from ails.server.connections import ConnectionGuard
from ails.server.dialect_routes import DialectRoutes
from ails.server.errors import (
    JSON_TYPE,
    GatewayError,
    Redactor,
    from_ails_error,
)
from ails.server.middleware import AccessLogger, Routes, request_wrapper
from ails.server.openai_routes import OpenAIRoutes
from ails.server.openapi import openapi_document
from ails.server.ratelimit import Admission, RateLimiter, answer_tokens, ask_for_usage
from ails.server.records import CURRENT
from ails.server.routing import GatewayRouter
from ails.server.security import SecurityPolicy
from ails.server.security import install as install_security
from ails.server.stream_pump import stream_out
from ails.server.validation import cap_tokens, validate
from ails.types import ChatRequest
from ails.wire import completion_json

if TYPE_CHECKING:
    from ails.server.metrics import GatewayMetrics

log = logging.getLogger("ails.server")

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_REQUEST_FIELDS = frozenset(ChatRequest.__struct_fields__) - {"extra"}
_HEALTH = b'{"status":"ok"}'
#: A non-streamed answer's wait for a busy model, in milliseconds.
QUEUE_MS_HEADER = "x-ails-queue-ms"


class Gateway:
    """The handlers and what they share."""

    def __init__(
        self,
        *,
        router: GatewayRouter,
        auth: Authenticator,
        redact: Redactor,
        max_body_bytes: int,
        max_messages: int,
        max_anonymous_body_bytes: int = 256 * 1024,
        max_tokens_cap: int | None = None,
        limiter: RateLimiter | None = None,
        cache: ResponseCache | None = None,
        security: SecurityPolicy | None = None,
        responses_ttl: float = 3600.0,
    ) -> None:
        self.router = router
        #: Seconds a /v1/responses answer is kept for previous_response_id (0: none).
        self.responses_ttl = responses_ttl
        #: Host, Origin and CORS checks (server/security.py); the default
        #: allows loopback names and no CORS.
        self.security = security or SecurityPolicy()
        #: Client connection deadlines and caps, and their refusal counts
        #: (server/connections.py); set by ``ails serve``, which owns the listener.
        self.connections: ConnectionGuard | None = None
        self.limiter = limiter  # per-key RPM/TPM (docs/scaling.md)
        #: Prometheus metrics (server/metrics.py); None: not counted.
        self.metrics: GatewayMetrics | None = None
        #: Each request keeps a record (backend, tokens, first byte) for the
        #: metrics or the JSON access log (server/records.py).
        self.record_requests = False
        self.cache = cache  # answers to temperature-0 requests
        self.auth = auth
        self.redact = redact
        self.max_body_bytes = max_body_bytes
        self.max_messages = max_messages
        self.max_tokens_cap = max_tokens_cap
        self.admission = AdmissionPipeline(
            auth=auth,
            router=router,
            limiter=limiter,
            max_body_bytes=max_body_bytes,
            max_anonymous_body_bytes=max_anonymous_body_bytes,
        )
        self.openapi_body = _encode(
            openapi_document(
                version=__version__,
                max_messages=max_messages,
                max_body_bytes=max_body_bytes,
                keyed=not auth.open,
                allow_signed=auth.allow_signed,
            )
        )

    async def start(self) -> None:
        """Open the backends (the embedded model loads, so the first request is
        not the slow one) and fetch their model lists."""
        await self.router.start()
        await self.auth.store.health()  # an unreachable Redis is logged at once

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()  # tokens not yet written
        await self.router.aclose()
        await self.auth.store.aclose()

    # -- chat completions --------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        admitted = await self.admission.admit(request, self._validate_chat)
        body, model, headers, limits, refund = (
            admitted.body,
            admitted.model,
            admitted.headers,
            admitted.limits,
            admitted.refund,
        )
        if admitted.stream and limits is not None and limits.counts_tokens:
            ask_for_usage(body)
        chat_request = self.chat_request(body)
        if admitted.stream:
            return await self._stream(
                request, chat_request, headers, admitted.include_usage, limits, refund
            )
        key = cache_key(body, self.router.canonical(model)) if self.cache is not None else None
        if key is not None and self.cache is not None:
            cached = await self.cache.get(key)
            headers["x-ails-cache"] = "miss" if cached is None else "hit"
            if cached is not None:  # nothing generated: no tokens to count
                return JSONAnswer(cached, headers)
        try:
            reply = await self.router.reply(chat_request)
        except AilsError as exc:
            if refund is not None:
                await refund()
            raise self.failure(exc, headers) from None
        if reply.queue_ms is not None:  # how long it waited for a busy model
            headers[QUEUE_MS_HEADER] = str(reply.queue_ms)
        answer = reply.raw
        record = CURRENT.get()
        if answer is None:  # made here: it says the name asked for (an alias, say)
            answer = completion_json(reply.completion, model=chat_request.model)
            if record is not None:
                record.usage(reply.completion.usage)
        elif record is not None:
            if reply.usage is not None:  # read by the provider on its way
                record.usage(reply.usage)
            else:
                record.answer(answer)
        if key is not None and self.cache is not None:
            await self.cache.put(key, answer)
        if limits is not None and limits.counts_tokens:
            limits.charge(answer_tokens(answer, chat_request.messages))
            headers.update(limits.headers())
        return JSONAnswer(answer, headers)  # web.Response's, for less (server/answer.py)

    def _validate_chat(self, body: dict[str, Any]) -> tuple[str, bool, bool]:
        # A method, not a functools.partial: measured, the partial (its keyword
        # merged per call) costs more than this frame.
        return validate(body, max_messages=self.max_messages)

    def chat_request(self, body: dict[str, Any]) -> ChatRequest:
        if self.max_tokens_cap is not None:
            cap_tokens(body, self.max_tokens_cap)
        if len(body) == 2:  # the plainest body, model and messages: by position,
            try:  # with no look at its keys (measured: 1.7k instructions, not 3.7k)
                return ChatRequest(body["model"], body["messages"])
            except KeyError:
                pass  # two other fields: as any body
        # The usual body: nothing unknown. (issuperset walks the dict: 0.5k
        # instructions less than ``body.keys() <= _REQUEST_FIELDS``.)
        if _REQUEST_FIELDS.issuperset(body):
            return ChatRequest(**body)
        known = {k: v for k, v in body.items() if k in _REQUEST_FIELDS}
        extra = {k: v for k, v in body.items() if k not in _REQUEST_FIELDS}
        return ChatRequest(**known, extra=extra)

    def failure(self, exc: AilsError, headers: dict[str, str]) -> GatewayError:
        err = from_ails_error(exc, self.redact)
        err.headers = {**headers, **(err.headers or {})}
        log.info(
            "request %s failed: %s (HTTP %d)",
            headers["x-request-id"],
            self.redact(str(exc)),
            err.status,
        )
        return err

    async def _stream(
        self,
        request: web.Request,
        chat_request: ChatRequest,
        headers: dict[str, str],
        include_usage: bool,
        admission: Admission | None = None,
        refund: Refund | None = None,
    ) -> web.StreamResponse:
        # Retries and fallbacks happen in here, before the first byte is sent;
        # once the response has started, a failure can only end the stream.
        try:
            stream = await self.router.open_stream(chat_request)
        except AilsError as exc:
            if refund is not None:
                await refund()
            raise self.failure(exc, headers) from None
        return await stream_out(
            self,
            request,
            stream,
            headers,
            include_usage,
            admission,
            refund,
            prompt=chat_request.messages,
            model=chat_request.model,
        )

    # -- the other endpoints -----------------------------------------------------

    async def models(self, request: web.Request) -> web.StreamResponse:
        self.admission.caller(request)
        return web.Response(body=self.router.models_body, content_type=JSON_TYPE)

    async def model(self, request: web.Request) -> web.StreamResponse:
        self.admission.caller(request)
        name = request.match_info["model"]
        owner = self.router.owner(name)
        if owner is None:
            raise GatewayError(
                404, f"The model {name!r} is not served here.", code="model_not_found"
            )
        body = {
            "id": name,
            "object": "model",
            "created": self.router.created(name),
            "owned_by": owner,
        }
        return web.Response(body=_encode(body), content_type=JSON_TYPE)

    async def health(self, request: web.Request) -> web.StreamResponse:
        redis = await self.auth.store.health()  # None without Redis; else cached, cheap
        if redis is None:
            return web.Response(body=_HEALTH, content_type=JSON_TYPE)
        return web.json_response({"status": "ok", "redis": redis})

    async def ready(self, request: web.Request) -> web.StreamResponse:
        """Readiness, for load balancers: the backends are open (the embedded
        model loads before the gateway listens) and at least one model list is
        known; 503 with retry-after until then (``/health`` is liveness)."""
        missing = self.router.unlisted()
        if len(missing) == len(self.router.backends):
            await self.router.refresh()  # rate-limited: a probe cannot flood a backend
            missing = self.router.unlisted()
        body = {"status": "ready", "waiting_for": missing}
        if len(missing) < len(self.router.backends):
            return web.json_response(body)
        body["status"] = "not_ready"
        return web.json_response(body, status=503, headers={"retry-after": "1"})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.openapi_body, content_type=JSON_TYPE)


#: The application's gateway, typed (``request.app[GATEWAY]``).
GATEWAY = web.AppKey("gateway", Gateway)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """The app owns its gateway's start-up and shutdown (aiohttp's cleanup
    context): the backends open before the first request and close after the
    last, whoever runs the app."""
    gateway = app[GATEWAY]
    try:
        await gateway.start()
        yield
    finally:
        await gateway.aclose()


def build_app(gateway: Gateway, *, ui: bool = False) -> web.Application:
    # The body limit is checked by the handler too, with our own message;
    # aiohttp's limit (a little higher) is the backstop for chunked bodies.
    metrics = gateway.metrics
    # No aiohttp middleware: each handler is wrapped once, as its route is
    # added (server/middleware.py), and a catch-all route added last gives
    # 404s, 405s and CORS preflights the same wrapper.
    wrap = request_wrapper(
        gateway.security,
        record=metrics is not None or gateway.record_requests,
        finish=metrics.finish if metrics is not None else None,
        keep_record=gateway.record_requests,  # the JSON access line reads it
    )
    app = web.Application(client_max_size=gateway.max_body_bytes)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(_lifetime)
    routes = Routes(app, wrap)
    routes.add_post("/v1/chat/completions", gateway.chat)
    OpenAIRoutes(gateway).add_to(routes)  # /v1/completions, /v1/embeddings
    DialectRoutes(gateway, responses_ttl=gateway.responses_ttl).add_to(routes)
    routes.add_get("/v1/models", gateway.models)
    routes.add_get("/v1/models/{model:.+}", gateway.model)  # names may hold a '/'
    routes.add_get("/health", gateway.health)
    routes.add_get("/ready", gateway.ready)
    routes.add_get("/openapi.json", gateway.openapi)
    if metrics is not None and metrics.key:
        # Without a metrics key, /metrics is not on the main port: 404 (--metrics-port).
        routes.add_get("/metrics", metrics.handle_keyed)
    if ui:
        from ails.server.ui import add_ui_routes

        add_ui_routes(routes)  # the chat page at / (docs/ui.md)
    routes.add_fallback()  # last: after every route
    install_security(app, gateway.security)
    return app


__all__ = ["GATEWAY", "AccessLogger", "Gateway", "build_app", "cap_tokens"]
