"""One generation: a blocking runtime call in its own thread, chunks out as batches.

``Server.handle_chat_completions`` blocks until the answer ends and calls our
callback from that thread, with the GIL, once per chunk; the callback's return
value is the only brake: ``True`` ends the loop and the runtime cancels the task
and frees its slot (measured: the next request on a one-slot model started at
once, docs/local-model.md). So:

- each generation gets a dedicated daemon thread, never the loop's default
  executor, which a few long generations would otherwise starve;
- the callback decodes the chunk (msgspec, straight into :class:`Chunk`) on that
  thread, then hands it to the event loop with ``call_soon_threadsafe``;
- stopping is a flag the callback reads: ``aclose``, a cancelled read, the
  stream being garbage-collected, or interpreter exit set it, and generation
  stops at the next token.

The state the thread touches lives in :class:`_Generation`, apart from the
:class:`LocalStream` the consumer holds, so a stream dropped without ``aclose``
can be collected and its finalizer can stop the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Any

import msgspec

from ails.errors import (
    AilsError,
    BadRequest,
    ProtocolError,
    ProviderError,
    Timeout,
    UpstreamUnavailable,
    error_for_status,
)
from ails.local.choices import UsageFolder
from ails.providers.base import ChunkStream, Timeouts
from ails.types import Chunk, text_chunk

_decode = msgspec.json.Decoder(Chunk).decode
_END = object()
_EXPIRED = object()
#: Generations whose thread is still in the runtime (touched only with the GIL held).
_active: set[_Generation] = set()


class _Generation:
    """What the runtime thread shares with the loop: a queue, a waiter, a stop flag."""

    __slots__ = (
        "body",
        "done",
        "items",
        "loop",
        "model",
        "server",
        "stop",
        "text",
        "thread",
        "waiter",
    )

    def __init__(
        self,
        server: Any,
        body: bytes,
        loop: asyncio.AbstractEventLoop,
        model: str | None,
        text: bool = False,
    ) -> None:
        self.server = server
        self.body = body
        #: A legacy text completion (the runtime's /v1/completions), not a chat.
        self.text = text
        self.loop = loop
        #: The name the caller asked for, put on every chunk (the runtime says its alias).
        self.model = model
        #: Chunks, errors and the end marker, in arrival order (loop thread only).
        self.items: deque[object] = deque()
        self.waiter: asyncio.Future[object] | None = None
        #: Resolved when the thread has left the runtime (its slot is free again).
        self.done: asyncio.Future[None] = loop.create_future()
        #: Read by the runtime thread at every token; a bool store is atomic.
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="ails-local-generate", daemon=True)

    # -- the runtime thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.text:
                self.server.handle_completions(self.body, self._on_data)
            else:
                self.server.handle_chat_completions(self.body, self._on_data)
        except BaseException as exc:  # a runtime failure must reach the consumer
            self._post(exc)
        finally:
            _active.discard(self)
            self._post(_END)

    def _on_data(self, data: bytes) -> bool:
        """The runtime's callback: return True to stop generating."""
        if self.stop:
            return True
        try:
            chunk = text_chunk(data) if self.text else _decode(data)
        except msgspec.DecodeError as exc:
            item: object = ProtocolError(
                f"the local runtime sent a chunk that is not chunk JSON: {exc}"
            )
        else:
            if self.model is not None:
                chunk.model = self.model
            item = chunk
        try:
            self.loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop is closed: nobody will read this answer
            self.stop = True
            return True
        return False

    def _post(self, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has no reader left
            self.loop.call_soon_threadsafe(self._deliver, item)

    # -- the loop thread ---------------------------------------------------------

    def _deliver(self, item: object) -> None:
        self.items.append(item)
        if item is _END and not self.done.done():
            self.done.set_result(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def generations_running() -> int:
    """Generations whose thread is in the runtime now: decoding in a slot, or
    waiting in the runtime's queue for one."""
    return len(_active)


def stop_all(timeout: float = 10.0) -> None:
    """At interpreter exit: stop every generation and wait for the threads to leave
    the runtime. A daemon thread that calls back into Python after finalization
    began is killed inside the runtime's C++ frames, which aborts the process
    ("FATAL: exception not rethrown"); a stopped one leaves within a token, or
    after its prompt if it was still queued for a slot."""
    generations = list(_active)
    for gen in generations:
        gen.stop = True
    deadline = time.monotonic() + timeout
    for gen in generations:
        gen.thread.join(max(0.0, deadline - time.monotonic()))


def runtime_error(err: Any, *, provider: str, param: str = "messages") -> ProviderError:
    """The runtime's in-band ``{"error": {"code": 400, "type": ..., "message": ...}}``."""
    if isinstance(err, dict):
        message = str(err.get("message") or "the local runtime reported an error")
        status = err.get("code") if isinstance(err.get("code"), int) else None
        kind = err.get("type") if isinstance(err.get("type"), str) else None
    else:
        message, status, kind = str(err), None, None
    if kind == "exceed_context_size_error":
        # OpenAI's code, param and wording for the same fault, which clients
        # (and agents deciding to compact their history) look for.
        given, limit = err.get("n_prompt_tokens"), err.get("n_ctx")
        if isinstance(given, int) and isinstance(limit, int):
            message = (
                f"This model's maximum context length is {limit} tokens. However, your "
                f"{param} resulted in {given} tokens. Please reduce the length of the {param}"
            )
        return BadRequest(
            f"{message} (the local provider's context is set by n_ctx or AILS_LOCAL_CTX)",
            status=400,
            provider=provider,
            body=err,
            code="context_length_exceeded",
            param=param,
        )
    if status is not None and 400 <= status < 600:
        return error_for_status(status, message, provider=provider, body=err, code=kind)
    return ProviderError(message, provider=provider, body=err, code=kind)


class LocalStream(ChunkStream):
    """The answer of one generation, a batch of every chunk that arrived since the
    last read. Deadlines are checked only while a read waits (a slow consumer is
    not an idle model)."""

    __slots__ = (
        "_closed",
        "_finished",
        "_folder",
        "_gen",
        "_idle",
        "_last",
        "_total_deadline",
        "chunks_seen",
        "provider",
    )

    def __init__(
        self,
        server: Any,
        body: bytes,
        *,
        provider: str,
        timeouts: Timeouts,
        include_usage: bool = False,
        model: str | None = None,
        text: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._gen = _Generation(server, body, loop, model, text)
        #: Unasked, the runtime's usage goes onto the final chunk (choices.UsageFolder).
        self._folder = None if include_usage else UsageFolder()
        self.provider = provider
        self._closed = False
        self._finished = False
        self.chunks_seen = 0
        self._idle = timeouts.idle
        self._last = loop.time()
        self._total_deadline = self._last + timeouts.total if timeouts.total is not None else None

    def start(self) -> None:
        _active.add(self._gen)
        self._gen.thread.start()

    async def wait_started(self) -> None:
        """Wait for the runtime's first event; raise its error if that is one.

        ``connect`` calls this so that a refused request (a prompt over the
        context, say) fails in ``connect``, where the router may still fall back.
        """
        gen = self._gen
        while not gen.items:
            await self._wait()
        first = gen.items[0]
        if isinstance(first, Chunk) and first.error is None:
            return
        gen.items.popleft()
        await self.aclose()
        if first is _END:
            raise ProtocolError(
                "the local runtime ended the answer before sending anything",
                provider=self.provider,
            )
        raise self._as_error(first)

    async def __anext__(self) -> list[Chunk]:
        items = self._gen.items
        while True:
            if self._closed:
                raise StopAsyncIteration
            batch: list[Chunk] = []
            while items:
                item = items[0]
                if type(item) is Chunk and item.error is None:
                    items.popleft()
                    if not self._finished:
                        for choice in item.choices:
                            if choice.finish_reason is not None:
                                self._finished = True
                    if self._folder is None:
                        batch.append(item)
                    else:
                        self._folder.add(item, batch)
                    continue
                if self._folder is not None:  # the end came without a usage chunk
                    self._folder.flush(batch)
                if batch:  # hand over what came before the end or the error first
                    break
                items.popleft()
                await self.aclose()
                if item is _END:
                    if self._finished:
                        raise StopAsyncIteration
                    raise ProtocolError(
                        f"the local runtime ended after {self.chunks_seen} chunks without a "
                        "finish_reason",
                        provider=self.provider,
                        code="stream_truncated",
                    )
                raise self._as_error(item)
            if batch:
                self.chunks_seen += len(batch)
                self._last = self._gen.loop.time()
                return batch
            await self._wait()

    async def _wait(self) -> None:
        gen = self._gen
        loop = gen.loop
        waiter: asyncio.Future[object] = loop.create_future()
        gen.waiter = waiter
        deadline = self._deadline()
        handle = loop.call_at(deadline[0], _expire, waiter) if deadline else None
        try:
            await waiter
        except asyncio.CancelledError:
            # A read cancelled while waiting means the consumer went away (its task
            # was cancelled): free the model now rather than when it is collected.
            gen.stop = True
            self._closed = True
            raise
        finally:
            gen.waiter = None
            if handle is not None:
                handle.cancel()
        if waiter.result() is _EXPIRED and not gen.items:
            await self.aclose()
            assert deadline is not None
            kind = deadline[1]
            if kind == "idle":
                msg = (
                    f"no token for {self._idle:g} s (idle timeout) after {self.chunks_seen} chunks"
                )
            else:
                msg = "the total time limit passed before the answer ended"
            raise Timeout(msg, kind=kind, provider=self.provider)

    def _deadline(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        if self._idle is not None:
            best = (self._last + self._idle, "idle")
        if self._total_deadline is not None and (best is None or self._total_deadline < best[0]):
            best = (self._total_deadline, "total")
        return best

    def _as_error(self, item: object) -> AilsError:
        if isinstance(item, Chunk):
            param = "prompt" if self._gen.text else "messages"
            return runtime_error(item.error, provider=self.provider, param=param)
        if isinstance(item, AilsError):
            if isinstance(item, ProtocolError):
                item.provider = self.provider
            return item
        if isinstance(item, (ValueError, RuntimeError)):
            # The runtime raises these while reading the request, before generating
            # (image input, a schema it cannot compile): a refusal of this request.
            return BadRequest(
                f"the embedded model refused the request: {item}",
                status=400,
                provider=self.provider,
                code="invalid_request",
            )
        return UpstreamUnavailable(
            f"the local runtime failed: {item!r}", provider=self.provider, retryable=False
        )

    async def aclose(self) -> None:
        """Stop generating at the next token; returns at once (the slot frees itself
        within one token time). Safe to call twice."""
        self._closed = True
        self._gen.stop = True

    async def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the generation thread has left the runtime, so its slot is free;
        False if that took longer than ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self._gen.done), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def __del__(self) -> None:
        # Dropped without aclose (a consumer that broke out of its loop): stop anyway.
        gen = getattr(self, "_gen", None)
        if gen is not None:
            gen.stop = True


def _expire(waiter: asyncio.Future[object]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)
