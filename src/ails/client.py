"""``AsyncClient``: the OpenAI-shaped async surface over the router.

``await client.chat.completions.create(model=..., messages=..., stream=True)``
gives an :class:`AsyncStream` of :class:`ails.types.Chunk`; ``stream=False``
gives a :class:`ails.types.Completion`. The sync ``Client`` (ails._sync) drives
this same code on a background event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from ails.providers.base import ChunkStream, Timeouts
from ails.router import ProviderPool, Router
from ails.types import ChatRequest, Chunk, Completion, as_message_dicts

_NOT_GIVEN: Any = object()


def make_timeouts(
    timeout: float | Timeouts | None, connect_timeout: float | None, idle_timeout: float | None
) -> Timeouts:
    if isinstance(timeout, Timeouts):
        return timeout
    base = Timeouts()
    return Timeouts(
        connect=base.connect if connect_timeout is _NOT_GIVEN else connect_timeout,
        idle=base.idle if idle_timeout is _NOT_GIVEN else idle_timeout,
        total=base.total if timeout is _NOT_GIVEN else timeout,
    )


def build_request(
    model: str | None,
    messages: Any,
    *,
    stream: bool,
    extra_body: dict[str, Any] | None,
    params: dict[str, Any],
) -> ChatRequest:
    known = {k: v for k, v in params.items() if k in ChatRequest.__struct_fields__}
    extra = {k: v for k, v in params.items() if k not in ChatRequest.__struct_fields__}
    if extra_body:
        extra.update(extra_body)
    return ChatRequest(
        model=model or "",
        messages=as_message_dicts(messages),
        stream=stream,
        extra=extra,
        **known,
    )


class AsyncStream:
    """Chunks of one answer. Iterate it (``async for chunk in stream``), or
    ``async for text in stream.text()``; close it (or use ``async with``) to
    stop early and free the connection or the model."""

    def __init__(self, inner: ChunkStream) -> None:
        self._inner = inner

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        try:
            async for batch in self._inner:
                for chunk in batch:
                    yield chunk
        finally:
            await self._inner.aclose()

    def batches(self) -> ChunkStream:
        """The underlying batches (one list of chunks per read)."""
        return self._inner

    async def text(self) -> AsyncIterator[str]:
        """Only the text of the first choice, piece by piece."""
        try:
            async for batch in self._inner:
                for chunk in batch:
                    choices = chunk.choices
                    if choices:
                        content = choices[0].delta.content
                        if content:
                            yield content
        finally:
            await self._inner.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str | None = None,
        messages: Any,
        stream: bool = False,
        extra_body: dict[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        """OpenAI's ``create``: returns an :class:`AsyncStream` when ``stream``
        is true, else a :class:`Completion`. Unknown keyword arguments are sent
        on to providers that accept extra fields."""
        request = build_request(
            model, messages, stream=stream, extra_body=extra_body, params=params
        )
        if stream:
            return AsyncStream(await self._client.router.open_stream(request))
        return await self._client.router.complete(request)


class _AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _AsyncCompletions(client)


class AsyncClient:
    """Streaming chat completions from any provider, with retries and fallbacks.

    ``providers`` maps a provider name to its settings, e.g.
    ``{"openai": {"base_url": URL, "api_key": KEY}}``; ``fallbacks`` are model
    names tried in order when the model fails before its answer starts.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        max_retries: int = 2,
        timeout: float | Timeouts | None = _NOT_GIVEN,
        connect_timeout: float | None = _NOT_GIVEN,
        idle_timeout: float | None = _NOT_GIVEN,
        fallbacks: list[str] | tuple[str, ...] = (),
        aliases: dict[str, str] | None = None,
        providers: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.timeouts = make_timeouts(timeout, connect_timeout, idle_timeout)
        self.pool = ProviderPool(providers, timeouts=self.timeouts)
        self.router = Router(
            self.pool,
            max_retries=max_retries,
            fallbacks=fallbacks,
            aliases=aliases,
            default_model=model,
        )
        self.chat = _AsyncChat(self)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "AsyncStream", "Completion"]
