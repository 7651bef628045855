"""The gateway's aiohttp application: the endpoints and the streaming path.

A chat request goes: content type -> key, from the head alone when it decides
(as OpenAI does, and before a byte of the body is read) -> the body within its
limit -> JSON -> validation of the fields the gateway itself needs -> the
signature's check -> model lookup -> the signed quota and replay cache (only
now: a request that cannot be served is not charged) -> the library's router.
Everything else in the body is passed on untouched.

Streams are passed through without buffering: one ``write`` per batch the
backend produced (one network read, one model token). From an HTTP upstream
each chunk's own JSON text is forwarded, so fields ails does not model
survive; other backends' chunks are encoded here. Every ``data:`` line holds
one single-line JSON object in which the text ``data: `` never occurs (its
colon is escaped as ``\\u003a``, which decodes the same), so the seed's naive
client, which deletes every ``data: `` from a line before parsing it, reads
the stream correctly too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from ails._version import __version__
from ails.errors import AilsError
from ails.providers._http import SSEChunkStream
from ails.providers.base import ChunkStream
from ails.server.auth import Authenticator, Refund
from ails.server.body import read_body
from ails.server.cache import ResponseCache, cache_key
from ails.server.connections import ConnectionGuard
from ails.server.errors import (
    JSON_TYPE,
    GatewayError,
    Redactor,
    from_ails_error,
    stream_error_event,
)
from ails.server.framing import frame_chunks, frame_raw
from ails.server.middleware import AccessLogger, request_middleware
from ails.server.openapi import openapi_document
from ails.server.ratelimit import Admission, RateLimiter, UsageMeter, answer_tokens, ask_for_usage
from ails.server.routing import GatewayRouter
from ails.server.security import SecurityPolicy
from ails.server.security import install as install_security
from ails.server.validation import validate
from ails.signing import has_signature_fields
from ails.sse import DONE
from ails.types import ChatRequest

log = logging.getLogger("ails.server")

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_REQUEST_FIELDS = frozenset(ChatRequest.__struct_fields__) - {"extra"}
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell a buffering reverse proxy (nginx) not to
}
_HEALTH = b'{"status":"ok"}'


class Gateway:
    """The handlers and what they share."""

    #: Host, Origin and CORS checks (server/security.py); create_gateway sets
    #: the configured one, this default allows loopback names and no CORS.
    security: SecurityPolicy = SecurityPolicy()
    #: Client connection deadlines and caps, and their refusal counts
    #: (server/connections.py); set by ``ails serve``.
    connections: ConnectionGuard | None = None

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
    ) -> None:
        self.router = router
        self.limiter = limiter  # per-key RPM/TPM (docs/scaling.md)
        self.cache = cache  # answers to temperature-0 requests
        self.auth = auth
        self.redact = redact
        self.max_body_bytes = max_body_bytes
        self.max_anonymous_body_bytes = min(max_anonymous_body_bytes, max_body_bytes)
        self.max_messages = max_messages
        self.max_tokens_cap = max_tokens_cap
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
        """Load the embedded model (so the first request is not the slow one) and
        fetch the upstreams' model lists."""
        local = self.router.local
        load = getattr(local, "load", None)
        if load is not None:
            await load()
        await self.router.start()
        await self.auth.store.health()  # an unreachable Redis is logged at once

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()  # tokens not yet written
        await self.router.aclose()
        await self.auth.store.aclose()

    # -- chat completions --------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        ctype = request.headers.get("Content-Type")
        # No type is refused too: a browser sends a cross-site POST without a
        # preflight only as a form, text/plain or with no type (docs/reliability.md).
        if ctype is None or ctype.partition(";")[0].strip().lower() != JSON_TYPE:
            raise GatewayError(
                415,
                f"the body must be JSON (Content-Type: application/json), not {ctype!r}",
                code="unsupported_media_type",
            )
        # The key first, before a byte of the body is read (server/body.py).
        if self.auth.key_decides(request):
            raw = await read_body(request, self.max_body_bytes)
        else:
            raw = await read_body(request, self.max_anonymous_body_bytes, anonymous=True)
        try:
            body = _decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise GatewayError(
                400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
            ) from None
        except RecursionError:
            raise GatewayError(
                400, "the JSON body is nested too deeply", code="invalid_json"
            ) from None
        if not isinstance(body, dict):
            raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
        signed = has_signature_fields(body)
        if not signed:
            self.auth.require_key(request)  # a bad key is told first, as OpenAI does
        model, stream, include_usage = validate(body, max_messages=self.max_messages)
        caller = self.auth.verify_signed(request, body) if signed else None
        if not self.router.serves(model) and not await self.router.knows(model):
            raise self.router.not_served(model)  # 404, or 503 while a list is missing
        # Charged only now that the request can be served (an anonymous signed
        # caller's quota), and given back if the backend fails before any output.
        refund = await self.auth.admit_signed(caller) if caller is not None else None
        admission = None
        if self.limiter is not None:  # 429 when the key's limit is reached
            admission = await self.limiter.admit(request.headers.get("Authorization"))
            if stream and admission is not None and admission.counts_tokens:
                ask_for_usage(body)
        chat_request = self._chat_request(body)
        headers = {
            "x-request-id": request["rid"],
            "x-ails-overhead-ms": f"{(time.perf_counter() - started) * 1000:.3f}",
        }
        if admission is not None:
            headers.update(admission.headers())
        if stream:
            return await self._stream(
                request, chat_request, headers, include_usage, admission, refund
            )
        key = cache_key(body, self.router.canonical(model)) if self.cache is not None else None
        if key is not None and self.cache is not None:
            cached = await self.cache.get(key)
            headers["x-ails-cache"] = "miss" if cached is None else "hit"
            if cached is not None:  # nothing generated: no tokens to count
                return web.Response(body=cached, content_type=JSON_TYPE, headers=headers)
        try:
            answer = await self.router.complete_raw(chat_request)
        except AilsError as exc:
            if refund is not None:
                await refund()
            raise self._failure(exc, headers) from None
        if key is not None and self.cache is not None:
            await self.cache.put(key, answer)
        if admission is not None and admission.counts_tokens:
            admission.charge(answer_tokens(answer, chat_request.messages))
            headers.update(admission.headers())
        return web.Response(body=answer, content_type=JSON_TYPE, headers=headers)

    def _chat_request(self, body: dict[str, Any]) -> ChatRequest:
        if self.max_tokens_cap is not None:
            cap_tokens(body, self.max_tokens_cap)
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in body.items():
            if key in _REQUEST_FIELDS:
                known[key] = value
            else:
                extra[key] = value
        return ChatRequest(**known, extra=extra)

    def _failure(self, exc: AilsError, headers: dict[str, str]) -> GatewayError:
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
            raise self._failure(exc, headers) from None
        rid = headers["x-request-id"]
        meter = None
        if admission is not None and admission.counts_tokens:
            meter = UsageMeter(chat_request.messages)
        try:
            # From an HTTP upstream, the chunks' own JSON texts are forwarded.
            raw_source = stream if isinstance(stream, SSEChunkStream) else None
            if raw_source is not None:
                raw_source.keep_raw = True
            resp = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
            try:
                await resp.prepare(request)
                nothing = await self._pump(
                    resp, stream, raw_source, include_usage, rid, meter, chat_request.model
                )
                if nothing and refund is not None:  # failed before any output
                    await refund()
            except ConnectionError:
                log.info("request %s: the client went away mid-stream", rid)
            return resp
        finally:
            # Also on cancellation (the client went away): the upstream request
            # is closed, or the local generation stopped, at once.
            await stream.aclose()
            if meter is not None and admission is not None:  # whatever the stream used
                admission.charge(meter.tokens())

    async def _pump(
        self,
        resp: web.StreamResponse,
        stream: ChunkStream,
        raw_source: SSEChunkStream | None,
        include_usage: bool,
        rid: str,
        meter: UsageMeter | None = None,
        model: str | None = None,
    ) -> bool:
        """Copy the stream out, one write per batch; end it with ``[DONE]``, after
        an error event if it failed (never a silent truncation). True: it failed
        before writing anything."""
        write = resp.write
        wrote = False
        try:
            async for batch in stream:
                if meter is not None:
                    meter.observe(batch)
                if raw_source is not None:
                    data = frame_raw(raw_source.raw, batch, include_usage)
                else:
                    data = frame_chunks(batch, include_usage, model)  # the name asked for
                if data:
                    wrote = True
                    await write(data)
        except AilsError as exc:
            log.warning("request %s: stream failed: %s", rid, self.redact(str(exc)))
            end = stream_error_event(exc, self.redact) + DONE
        except ConnectionError:
            raise
        except Exception as exc:  # a bug must not look like a clean end either
            log.exception("request %s: stream failed", rid)
            end = stream_error_event(exc, self.redact) + DONE
        else:
            end = DONE
        # The end marker and the end of the body in one send.
        await resp.write_eof(end)
        return end is not DONE and not wrote

    # -- the other endpoints -----------------------------------------------------

    async def models(self, request: web.Request) -> web.StreamResponse:
        self.auth.require_key(request)
        return web.Response(body=self.router.models_body, content_type=JSON_TYPE)

    async def model(self, request: web.Request) -> web.StreamResponse:
        self.auth.require_key(request)
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

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.openapi_body, content_type=JSON_TYPE)


def cap_tokens(body: dict[str, Any], cap: int) -> None:
    """``--max-tokens-cap``: lower the limit the client gave, or set one.

    Newer clients send only ``max_completion_tokens`` (some models require it
    instead of ``max_tokens``), so that one is lowered when present.
    """
    if isinstance(body.get("max_completion_tokens"), int):
        body["max_completion_tokens"] = min(cap, body["max_completion_tokens"])
        if isinstance(body.get("max_tokens"), int):
            body["max_tokens"] = min(cap, body["max_tokens"])
    elif not isinstance(body.get("max_tokens"), int) or body["max_tokens"] > cap:
        body["max_tokens"] = cap


def build_app(gateway: Gateway, *, ui: bool = False) -> web.Application:
    # The body limit is checked by the handler too, with our own message;
    # aiohttp's limit (a little higher) is the backstop for chunked bodies.
    app = web.Application(client_max_size=gateway.max_body_bytes, middlewares=[request_middleware])
    app.router.add_post("/v1/chat/completions", gateway.chat)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_get("/v1/models/{model:.+}", gateway.model)  # names may hold a '/'
    app.router.add_get("/health", gateway.health)
    app.router.add_get("/openapi.json", gateway.openapi)
    if ui:
        from ails.server.ui import add_ui_routes

        add_ui_routes(app)  # the chat page at / (docs/ui.md)
    install_security(app, gateway.security)
    return app


__all__ = ["AccessLogger", "Gateway", "build_app", "cap_tokens", "frame_chunks", "frame_raw"]
