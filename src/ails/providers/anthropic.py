"""Anthropic's Messages API as a backend: ``ails -m anthropic/MODEL``, or
``[providers.claude] type = "anthropic"``.

The translation (a chat request into a Messages body, Anthropic's events into
chunks, its error bodies into ails errors) is pure and lives in
:mod:`ails.providers.anthropic_wire`; this module is the I/O around it, on the
HTTP machinery every HTTP provider shares (one aiohttp session, deadlines
including the idle limit, the status → error mapping, the router's retries:
``overloaded_error`` 529 is a 5xx, so retried like a 503, and a 429's
``retry-after`` is honoured).

Like the official SDK it reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``
(the host, without ``/v1``) when they are not given. Anthropic always wants a
key, so a missing one fails before the network, naming the variable.

Chunks and answers made here carry no bytes of their own (``Batch.raw`` and
``Reply.raw`` are ``None``): what the upstream sent is not OpenAI's wire
format, so a gateway writes the chunks ails made rather than forwarding them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import msgspec

from ails.errors import AilsError, AuthFailed, ProtocolError, ProviderError
from ails.providers import anthropic_wire as wire
from ails.providers._http import SSEChunkStream
from ails.providers._keyed import KeyedHTTPProvider
from ails.providers.base import Batch, ChunkStream, Reply, Timeouts, TokenCount
from ails.sse import Event
from ails.types import Chunk, Completion

OFFICIAL_BASE_URL = "https://api.anthropic.com"
#: The API version every request names (the SDKs' own, and the one this
#: provider's translation is written for).
API_VERSION = "2023-06-01"
#: Models asked for per page of ``GET /v1/models`` (Anthropic allows 1-1000).
MODELS_PAGE = 1000
#: Pages followed at most: an upstream that always says ``has_more`` must not
#: keep us listing forever.
MAX_MODEL_PAGES = 20

_decode = msgspec.json.Decoder().decode


class MessageEventStream(SSEChunkStream):
    """An Anthropic event stream read as chunks: the deadlines and reads are
    the shared ones; ``message_stop`` is the end, an ``error`` event raises."""

    __slots__ = ("_events",)

    END_SIGNAL = "message_stop"
    PLAIN_EVENTS = False  # every event is named

    def __init__(
        self, resp: aiohttp.ClientResponse, *, provider: str, timeouts: Timeouts, started: float
    ) -> None:
        super().__init__(resp, provider=provider, timeouts=timeouts, started=started)
        self._events = wire.EventsToChunks(provider=provider)

    def _decode(self, events: list[Event]) -> tuple[Batch, AilsError | None]:
        chunks: list[Chunk] = []
        error: AilsError | None = None
        for ev in events:
            try:
                data = _decode(ev.data)
            except msgspec.DecodeError as exc:
                error = ProtocolError(
                    f"event {ev.event!r} is not JSON: {exc}",
                    provider=self.provider,
                    code="invalid_chunk",
                )
                break
            if not isinstance(data, dict):
                continue
            try:
                chunks.extend(self._events.feed(ev.event, data))
            except ProviderError as exc:
                error = exc
                break
            except (AttributeError, TypeError, ValueError) as exc:  # a field of the wrong shape
                error = ProtocolError(
                    f"event {ev.event!r} is not what the Messages API sends: {exc!r}",
                    provider=self.provider,
                    code="invalid_chunk",
                )
                break
            if self._events.finished:
                self._done = self._finished = True
                break
        return Batch(chunks), error


class AnthropicProvider(KeyedHTTPProvider):
    name = "anthropic"
    url = OFFICIAL_BASE_URL
    models = ()
    default_model = None
    supports_stream = True
    needs_auth = True
    key_env = ("ANTHROPIC_API_KEY",)
    setting_env: ClassVar[Mapping[str, str]] = {"base_url": "ANTHROPIC_BASE_URL"}

    def _no_key(self) -> str:
        if self.name == type(self).name:
            return "set ANTHROPIC_API_KEY, or api_key in its config"
        return f"set api_key, api_key_env or api_key_file in [providers.{self.name}]"

    def readiness(self) -> str | None:
        return None if self.api_key else f"needs a key: {self._no_key()}"

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicProvider(base_url={self.base_url!r})"

    def request_headers(self) -> dict[str, str]:
        if not self.api_key:
            # Anthropic's API always wants one: fail before the network.
            raise AuthFailed(
                f"no API key for the {self.name} provider: {self._no_key()}",
                provider=self.name,
                code="missing_api_key",
            )
        return {**self.extra_headers, "x-api-key": self.api_key, "anthropic-version": API_VERSION}

    def error_from_response(
        self, status: int, raw: bytes, retry_after: float | None
    ) -> ProviderError:
        try:
            body: Any = _decode(raw)
        except msgspec.DecodeError:
            body = raw.decode("utf-8", "replace").strip()[:500] or None
        error = wire.error_from_body(status, body, provider=self.name)
        if isinstance(body, str):
            error.message = body
        error.retry_after = retry_after
        return error

    # No **extra: what Anthropic has no field for (seed, n, response_format) is
    # refused by the router with a 400 naming it, not dropped silently.
    async def connect(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        stop: str | list[str] | None = None,
        user: str | None = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        stream_options: dict[str, Any] | None = None,
        stream: bool = True,
    ) -> ChunkStream:
        """``stream_options`` is accepted and needs nothing: an Anthropic
        stream always ends with its usage."""
        body = self._body(model, messages, locals(), stream=True)
        return await self.open_sse("/v1/messages", body, stream_type=MessageEventStream)

    def _body(
        self, model: str, messages: list[Any], params: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        params = {k: v for k, v in params.items() if k not in ("self", "model", "messages")}
        if params.get("max_tokens") is None:
            params["max_tokens"] = params.get("max_completion_tokens")
        params["stream"] = stream
        plain = [msgspec.to_builtins(m) if isinstance(m, msgspec.Struct) else m for m in messages]
        return wire.messages_body(model, plain, **params)

    async def reply(self, model: str, messages: list[Any], **params: Any) -> Reply:
        params.pop("stream", None)
        body = self._body(model, messages, params, stream=False)
        raw, _ = await self.post_for_json("/v1/messages", body)
        message = _decode(raw)
        if not isinstance(message, dict) or message.get("type") != "message":
            raise ProtocolError(
                "answer is not a Messages API message", provider=self.name, code="invalid_message"
            )
        try:
            return Reply(wire.message_to_completion(message))
        except (AttributeError, TypeError, ValueError) as exc:  # a field of the wrong shape
            raise ProtocolError(
                f"answer is not what the Messages API sends: {exc!r}",
                provider=self.name,
                code="invalid_message",
            ) from None

    async def complete(self, model: str, messages: list[Any], **params: Any) -> Completion:
        return (await self.reply(model, messages, **params)).completion

    async def count_tokens(
        self, model: str, messages: list[Any], **params: Any
    ) -> TokenCount | None:
        """The upstream's own count (``POST /v1/messages/count_tokens``): exact."""
        body = self._body(model, messages, params, stream=False)
        body.pop("max_tokens", None)  # count_tokens takes none
        body.pop("stream", None)
        raw, _ = await self.post_for_json("/v1/messages/count_tokens", body)
        answer = _decode(raw)
        tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ProtocolError(
                "count_tokens answer has no input_tokens", provider=self.name, code="invalid_count"
            )
        return TokenCount(tokens, exact=True)

    async def list_models(self) -> list[str]:
        return [str(m["id"]) for m in await self.list_model_objects()]

    async def list_model_objects(self) -> list[dict[str, Any]]:
        """Every page of ``GET /v1/models`` (``has_more``/``last_id`` → ``after_id``),
        as OpenAI-style entries: ``id``, ``created`` from ``created_at``, ``owned_by``."""
        out: list[dict[str, Any]] = []
        query: dict[str, str] = {"limit": str(MODELS_PAGE)}
        for _ in range(MAX_MODEL_PAGES):
            page = await self.get_json("/v1/models", query)
            items = page.get("data") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ProtocolError(
                    "model list has no 'data'", provider=self.name, code="invalid_models"
                )
            out += [wire.model_entry(m) for m in items if isinstance(m, dict) and m.get("id")]
            last = page.get("last_id")
            if not page.get("has_more") or not isinstance(last, str) or not last:
                break
            query = {**query, "after_id": last}
        return out


__all__ = ["API_VERSION", "OFFICIAL_BASE_URL", "AnthropicProvider", "MessageEventStream"]
