"""The routes of the other dialects: Anthropic's ``POST /v1/messages`` and
OpenAI's ``POST /v1/responses`` (with ``GET``/``DELETE /v1/responses/{id}``).

Each is the chat path with a translation at each end (server/dialects/): the
request is admitted by the same pipeline as chat completions (keys, signed
rules, model, rate limit), translated into one chat request, sent through the
same router, and the chunks that come back are translated into the dialect's
events. A failure after the stream began ends it with the dialect's own error
event, never a silent truncation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import ChunkStream, TokenCount
from ails.server.admission import Admitted
from ails.server.answer import JSONAnswer
from ails.server.auth import Caller, bearer_token
from ails.server.dialect_pump import pump_events
from ails.server.dialects import (
    messages_request,
    messages_stream,
    responses_request,
    responses_stream,
)
from ails.server.dialects.common import DialectEvent
from ails.server.errors import JSON_TYPE, GatewayError
from ails.server.middleware import anthropic_error_response
from ails.server.ratelimit import completion_tokens
from ails.server.records import CALLER, RID, current_record, note_refusal
from ails.server.validation import refuse_signed
from ails.types import Completion

if TYPE_CHECKING:
    from ails.server.app import Gateway
    from ails.server.middleware import RouteTarget


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


#: Bytes of prompt JSON per token in a count_tokens estimate (English text
#: runs about four characters a token; the JSON around it makes this err high).
BYTES_PER_TOKEN = 4

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _with_api_key(request: web.Request) -> web.Request:
    """Anthropic's clients send ``x-api-key``; Claude Code sends a Bearer
    header. Either is checked against the same keys; both, and different, is 401."""
    key = request.headers.get("x-api-key")
    if key is None:
        return request
    authorization = request.headers.get("Authorization")
    if authorization is not None and bearer_token(authorization) != key:
        raise GatewayError(
            401, "x-api-key and Authorization carry different keys", code="invalid_api_key"
        )
    headers = request.headers.copy()
    headers["Authorization"] = f"Bearer {key}"
    return request.clone(headers=headers)


def _dropped_header(headers: dict[str, str], dropped: list[str]) -> None:
    if dropped:
        headers["x-ails-dropped-tools"] = ",".join(dropped)


class DialectRoutes:
    """The handlers of the dialects, sharing the gateway's admission and router."""

    def __init__(self, gateway: Gateway, *, responses_ttl: float = 3600.0) -> None:
        self.gateway = gateway
        self.responses_ttl = responses_ttl

    def add_to(self, app: RouteTarget) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/responses/{id}", self.get_response)
        app.router.add_delete("/v1/responses/{id}", self.delete_response)

    # -- shared --------------------------------------------------------------------------------

    async def _open(self, chat: dict[str, Any], admitted: Admitted) -> ChunkStream:
        try:
            return await self.gateway.router.open_stream(self.gateway.chat_request(chat))
        except AilsError as exc:
            raise await self._failed(exc, admitted) from None

    async def _complete(self, chat: dict[str, Any], admitted: Admitted) -> Completion:
        """The whole answer, its tokens charged to the key's ``--tpm`` as a
        chat completion's are (the headers then say what is left)."""
        headers = admitted.headers
        try:
            reply = await self.gateway.router.reply(self.gateway.chat_request(chat))
        except AilsError as exc:
            raise await self._failed(exc, admitted) from None
        completion = reply.completion
        record = current_record()
        if record is not None:
            record.usage(completion.usage)
        if reply.queue_ms is not None:
            headers["x-ails-queue-ms"] = str(reply.queue_ms)
        limits = admitted.limits
        if limits is not None and limits.counts_tokens:
            limits.charge(completion_tokens(completion, chat["messages"]))
            headers.update(limits.headers())
        return completion

    async def _failed(self, exc: AilsError, admitted: Admitted) -> GatewayError:
        """A backend that failed before any output: the request's quota and
        rpm units are given back (as on chat), and the error is the gateway's."""
        if admitted.refund is not None:
            await admitted.refund()
        return self.gateway.failure(exc, admitted.headers)

    def _error_text(self, exc: AilsError) -> tuple[int, str, str]:
        err = self.gateway.failure(exc, {"x-request-id": "-"})
        return err.status, err.code or err.type, err.message

    # -- Anthropic Messages --------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self._anthropic_shaped(self._messages, request)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._anthropic_shaped(self._count_tokens, request)

    async def _anthropic_shaped(
        self, handler: _Handler, request: web.Request
    ) -> web.StreamResponse:
        """Refusals in Anthropic's error shape and statuses."""
        try:
            return await handler(request)
        except GatewayError as err:
            note_refusal(err)
            return anthropic_error_response(err, request[RID])

    async def _messages(self, original: web.Request) -> web.StreamResponse:
        request = _with_api_key(original)
        holder: list[messages_request.MessagesRequest] = []

        def validate(body: dict[str, Any]) -> tuple[str, bool, bool]:
            refuse_signed(body)
            holder.append(messages_request.request_to_chat(body))
            return holder[0].model, holder[0].stream, False

        admitted = await self.gateway.admission.admit(request, validate)
        _keep_caller(request, original)
        translated = holder[0]
        headers = admitted.headers
        _dropped_header(headers, translated.dropped_tools)
        if not translated.stream:
            completion = await self._complete(translated.chat, admitted)
            message = messages_stream.completion_to_message(completion, model=translated.model)
            return JSONAnswer(_encode(message), headers)
        stream = await self._open(translated.chat, admitted)
        out = messages_stream.MessageStream(model=translated.model)

        def fail(exc: AilsError) -> list[DialectEvent]:
            status, code, message = self._error_text(exc)
            return [messages_stream.error_event(status, message, code)]

        start = [*out.start(), messages_stream.ping()]
        prompt = translated.chat["messages"]
        return await pump_events(
            self.gateway, request, stream, admitted, prompt, start, out.feed, out.finish, fail
        )

    async def _count_tokens(self, original: web.Request) -> web.StreamResponse:
        """The backend's own count where it has one (the embedded model's
        tokenizer, an Anthropic upstream's count_tokens): ``x-ails-token-count:
        exact``. Otherwise an estimate, said so: the translated prompt's JSON
        bytes over :data:`BYTES_PER_TOKEN`, which errs high for English prose."""
        request = _with_api_key(original)
        holder: list[messages_request.MessagesRequest] = []

        def validate(body: dict[str, Any]) -> tuple[str, bool, bool]:
            refuse_signed(body)
            # count_tokens takes no max_tokens; the translation wants one.
            holder.append(messages_request.request_to_chat({"max_tokens": 1, **body}))
            return holder[0].model, False, False

        admitted = await self.gateway.admission.admit(request, validate)
        _keep_caller(request, original)
        chat = holder[0].chat
        try:
            counted = await self.gateway.router.count_tokens(self.gateway.chat_request(chat))
        except AilsError as exc:
            raise self.gateway.failure(exc, admitted.headers) from None
        if counted is None:
            size = len(_encode([chat["messages"], chat.get("tools", [])]))
            counted = TokenCount(max(1, math.ceil(size / BYTES_PER_TOKEN)), exact=False)
        body = {"input_tokens": counted.tokens}
        kind = "exact" if counted.exact else "estimate"
        headers = {**admitted.headers, "x-ails-token-count": kind}
        return web.Response(body=_encode(body), content_type=JSON_TYPE, headers=headers)

    # -- OpenAI Responses ----------------------------------------------------------------------

    def _key(self, response_id: str) -> str:
        return f"response:{response_id}"

    async def _load(self, response_id: str, caller: Caller) -> dict[str, Any] | None:
        """A stored response, if it exists and belongs to ``caller``."""
        raw = await self.gateway.auth.store.cache_get(self._key(response_id))
        if not raw:
            return None
        stored: dict[str, Any] = _decode(raw)
        return stored if stored.get("owner") == _owner(caller) else None

    async def _save(
        self, translated: responses_request.ResponsesRequest, out: responses_stream.ResponseStream,
        caller: Caller,
    ) -> None:  # fmt: skip
        if self.responses_ttl <= 0 or not translated.echo.get("store", True):
            return
        record = {
            "owner": _owner(caller),
            "messages": [*translated.messages, out.history_message()],
            "response": out.response(),
        }
        await self.gateway.auth.store.cache_set(
            self._key(out.id), _encode(record), self.responses_ttl
        )

    async def responses(self, request: web.Request) -> web.StreamResponse:
        holder: list[tuple[dict[str, Any], responses_request.ResponsesRequest]] = []

        def validate(body: dict[str, Any]) -> tuple[str, bool, bool]:
            refuse_signed(body)
            # Translated here, so a bad body is a 400 before any state is touched.
            translated = responses_request.request_to_chat(body)
            holder.append((body, translated))
            return translated.model, translated.stream, False

        admitted = await self.gateway.admission.admit(request, validate)
        (body, translated), caller, headers = holder[0], admitted.caller, admitted.headers
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = await self._load(str(previous), caller)
            if stored is None:
                if admitted.refund is not None:  # refused before any work: no unit spent
                    await admitted.refund()
                raise GatewayError(
                    404,
                    f"Previous response with id '{previous}' not found.",
                    code="previous_response_not_found",
                    param="previous_response_id",
                )
            # Once more, after the turns it continues (which needed the caller).
            translated = responses_request.request_to_chat(body, stored["messages"])
        _dropped_header(headers, translated.dropped_tools)
        if not translated.stream:
            completion = await self._complete(translated.chat, admitted)
            answer, done = responses_stream.completion_to_response(
                completion, translated, created_at=time.time()
            )
            await self._save(translated, done, caller)
            return JSONAnswer(answer, headers)
        stream = await self._open(translated.chat, admitted)
        out = responses_stream.ResponseStream(translated, created_at=time.time())
        saved: list[bool] = []

        def finish() -> list[DialectEvent]:
            saved.append(True)
            return out.finish()

        def fail(exc: AilsError) -> list[DialectEvent]:
            _, code, message = self._error_text(exc)
            return out.fail(code, message)

        prompt = translated.chat["messages"]
        resp = await pump_events(
            self.gateway, request, stream, admitted, prompt, out.start(), out.feed, finish, fail
        )
        if saved:
            await self._save(translated, out, caller)
        return resp

    async def get_response(self, request: web.Request) -> web.StreamResponse:
        caller = self.gateway.admission.caller(request)
        stored = await self._load(request.match_info["id"], caller)
        if stored is None:
            raise _not_found(request.match_info["id"])
        return web.Response(body=_encode(stored["response"]), content_type=JSON_TYPE)

    async def delete_response(self, request: web.Request) -> web.StreamResponse:
        caller = self.gateway.admission.caller(request)
        response_id = request.match_info["id"]
        if await self._load(response_id, caller) is None:
            raise _not_found(response_id)
        # The store has no delete: an empty value reads as absent, and expires.
        await self.gateway.auth.store.cache_set(self._key(response_id), b"", 1.0)
        body = {"id": response_id, "object": "response.deleted", "deleted": True}
        return web.Response(body=_encode(body), content_type=JSON_TYPE)


def _owner(caller: Caller) -> str:
    """Whose a stored response is: the key's id, else ``open``/``signed``."""
    return caller.state_id or caller.label()


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(
        404, f"Response with id '{response_id}' not found.", code="not_found", param="id"
    )


__all__ = ["DialectRoutes"]


def _keep_caller(clone: web.Request, original: web.Request) -> None:
    """The access log reads who called from the request aiohttp logs: the
    original, not the clone admission saw."""
    caller = clone.get(CALLER)
    if caller is not None:
        original[CALLER] = caller
