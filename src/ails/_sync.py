"""The sync API: ``Client``, ``Stream`` and the seed-shaped ``create_completion``.

Nothing here re-implements the pipeline: one event loop runs in a daemon
thread and every call is the async code run there. Chunks cross the thread
boundary a *batch* at a time (one network read or one model token), so the
bridge costs one hop per read, not one per chunk.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from ails.client import _NOT_GIVEN, AsyncClient, build_request
from ails.providers import registry
from ails.providers.base import ChunkStream, Timeouts
from ails.types import Chunk

T = TypeVar("T")


class _Portal:
    """A process-wide event loop in a daemon thread, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        loop = cls._loop
        if loop is not None:
            return loop
        with cls._lock:
            if cls._loop is None:
                new = asyncio.new_event_loop()
                thread = threading.Thread(target=new.run_forever, name="ails-loop", daemon=True)
                thread.start()
                cls._loop = new
            return cls._loop

    @classmethod
    def call(cls, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, cls.loop())
        try:
            return fut.result()
        except BaseException:
            # Ctrl-C in the caller's thread: stop the work on the loop too.
            fut.cancel()
            raise


async def _next_batch(inner: ChunkStream) -> list[Chunk] | None:
    try:
        return await inner.__anext__()
    except StopAsyncIteration:
        return None


class Stream:
    """Chunks of one answer, for sync code. Iterate it, or ``stream.text()``;
    ``close()`` (or ``with``) stops early and frees the connection or the model."""

    def __init__(self, inner: ChunkStream) -> None:
        self._inner = inner
        self._closed = False

    def batches(self) -> Iterator[list[Chunk]]:
        try:
            while True:
                batch = _Portal.call(_next_batch(self._inner))
                if batch is None:
                    return
                yield batch
        finally:
            self.close()

    def __iter__(self) -> Iterator[Chunk]:
        for batch in self.batches():
            yield from batch

    def text(self) -> Iterator[str]:
        """Only the text of the first choice, piece by piece."""
        for batch in self.batches():
            for chunk in batch:
                choices = chunk.choices
                if choices:
                    content = choices[0].delta.content
                    if content:
                        yield content

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _Portal.call(self._inner.aclose())

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed and _Portal._loop is not None:
            # Best effort for a stream dropped unread; never block a finalizer.
            self._closed = True
            asyncio.run_coroutine_threadsafe(self._inner.aclose(), _Portal._loop)


class _Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        model: str | None = None,
        messages: Any,
        stream: bool = False,
        extra_body: dict[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        """OpenAI's ``create``: a :class:`Stream` when ``stream`` is true, else a
        :class:`ails.types.Completion`."""
        request = build_request(
            model, messages, stream=stream, extra_body=extra_body, params=params
        )
        router = self._client._async.router
        if stream:
            return Stream(_Portal.call(router.open_stream(request)))
        return _Portal.call(router.complete(request))


class _Chat:
    def __init__(self, client: Client) -> None:
        self.completions = _Completions(client)


class Client:
    """The sync twin of :class:`ails.AsyncClient`, with the same arguments."""

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
        self._async = AsyncClient(
            model=model,
            max_retries=max_retries,
            timeout=timeout,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
            fallbacks=fallbacks,
            aliases=aliases,
            providers=providers,
        )
        self.chat = _Chat(self)

    def close(self) -> None:
        _Portal.call(self._async.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_CLIENT_KEYS = ("max_retries", "timeout", "connect_timeout", "idle_timeout", "fallbacks")


def create_completion(
    model: str | None,
    messages: Any,
    stream: bool = True,
    *,
    provider: str | None = None,
    **kwargs: Any,
) -> Iterator[str]:
    """The seed's shape as a one-liner: yields the answer's text piece by piece.

    ``provider`` and its settings are keyword arguments, e.g.
    ``create_completion("x", m, provider="openai", base_url=URL, api_key=KEY)``;
    other keyword arguments are request parameters (``temperature``,
    ``max_tokens``...). With ``stream=False`` the whole text comes as one piece.
    """
    provider_name, model_name = (provider, model or "") if provider else registry.split_model(model)
    if provider and model and model.startswith(f"{provider}/"):
        model_name = model[len(provider) + 1 :]
    cls = registry.provider_class(provider_name)
    model_name = model_name or cls.default_model or ""
    settable = cls.settings()
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in settable and k != "timeouts"}
    client_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _CLIENT_KEYS}
    client = Client(providers={provider_name: settings}, **client_kw)
    full_model = f"{provider_name}/{model_name}"
    try:
        if not stream:
            completion = client.chat.completions.create(
                model=full_model, messages=messages, **kwargs
            )
            text = completion.choices[0].message.content if completion.choices else ""
            yield text or ""
            return
        with client.chat.completions.create(
            model=full_model, messages=messages, stream=True, **kwargs
        ) as chunks:
            yield from chunks.text()
    finally:
        client.close()
