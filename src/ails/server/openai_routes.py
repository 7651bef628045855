"""OpenAI's endpoints beside chat completions: legacy text completions
(``POST /v1/completions``) and embeddings (``POST /v1/embeddings``).

Each is admitted by the one pipeline (keys, body limits, model, rate limit),
then sent through the router's retries and fallbacks to the backend's own
method: ``Provider.stream_text``/``complete_text`` and ``Provider.embed``. An
HTTP backend's answer is passed on as it sent it (its bytes, or each chunk's
JSON text); the embedded model completes text natively; a backend that serves
neither is a 404 naming the model. A text completion stream ends like a chat
stream: ``[DONE]``, after an error event if it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import ChunkStream, Provider, Reply
from ails.server.errors import JSON_TYPE, GatewayError
from ails.server.ratelimit import answer_tokens, ask_for_usage
from ails.server.records import current_record
from ails.server.stream_pump import stream_out
from ails.server.validation import cap_tokens, refuse_signed, validate_completions
from ails.wire import text_chunk_json, text_completion_json

if TYPE_CHECKING:
    from ails.server.admission import Admitted
    from ails.server.app import Gateway
    from ails.server.middleware import RouteTarget


class OpenAIRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_to(self, app: RouteTarget) -> None:
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)

    async def _failed(self, exc: AilsError, admitted: Admitted) -> GatewayError:
        if admitted.refund is not None:
            await admitted.refund()
        return self.gateway.failure(exc, admitted.headers)

    # -- legacy text completions -------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        admitted = await gateway.admission.admit(request, _validate_completions)
        body = {k: v for k, v in admitted.body.items() if k != "model"}
        if gateway.max_tokens_cap is not None:
            cap_tokens(body, gateway.max_tokens_cap)
        # The prompt as a message, for the rate limit's estimate when a
        # backend reports no usage.
        prompt = [{"content": p} for p in _prompt_texts(body.get("prompt"))]
        limits = admitted.limits
        if not admitted.stream:

            async def complete(provider: Provider, model: str, _: dict[str, Any]) -> Reply:
                return await provider.complete_text(model, body)

            try:
                reply = await gateway.router.run(admitted.model, complete)
            except AilsError as exc:
                raise await self._failed(exc, admitted) from None
            answer = reply.raw
            if answer is None:  # made here: it says the name asked for (an alias, say)
                answer = text_completion_json(reply.completion, model=admitted.model)
            if limits is not None and limits.counts_tokens:
                limits.charge(answer_tokens(answer, prompt))
                admitted.headers.update(limits.headers())
            record = current_record()
            if record is not None:
                record.answer(answer)
            return web.Response(body=answer, content_type=JSON_TYPE, headers=admitted.headers)
        if limits is not None and limits.counts_tokens:
            ask_for_usage(body)

        async def open_stream(provider: Provider, model: str, _: dict[str, Any]) -> ChunkStream:
            return await provider.stream_text(model, body)

        try:
            stream = await gateway.router.run(admitted.model, open_stream)
        except AilsError as exc:
            raise await self._failed(exc, admitted) from None
        return await stream_out(
            gateway,
            request,
            stream,
            admitted.headers,
            admitted.include_usage,
            limits,
            admitted.refund,
            prompt=prompt,
            model=admitted.model,
            encode=text_chunk_json,
        )

    # -- embeddings: passed through to a backend that serves them -----------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        admitted = await self.gateway.admission.admit(request, _validate_embeddings)
        body = {k: v for k, v in admitted.body.items() if k != "model"}

        async def attempt(provider: Provider, model: str, _: dict[str, Any]) -> bytes:
            return await provider.embed(model, body)

        try:
            answer = await self.gateway.router.run(admitted.model, attempt)
        except AilsError as exc:
            raise await self._failed(exc, admitted) from None
        record = current_record()
        if record is not None:
            record.answer(answer)  # the prompt's tokens
        return web.Response(body=answer, content_type=JSON_TYPE, headers=admitted.headers)


def _validate_completions(body: dict[str, Any]) -> tuple[str, bool, bool]:
    refuse_signed(body)
    return validate_completions(body)


def _validate_embeddings(body: dict[str, Any]) -> tuple[str, bool, bool]:
    model, given = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "model: a model name is required", param="model")
    texts = isinstance(given, list) and all(isinstance(x, str) for x in given)
    tokens = isinstance(given, list) and all(type(x) is int for x in given)
    if not given or not (isinstance(given, str) or texts or tokens):
        raise GatewayError(
            400, "input: a string, a list of strings or a list of token ids", param="input"
        )
    return model, False, False


def _prompt_texts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)]
    return []


__all__ = ["OpenAIRoutes"]
