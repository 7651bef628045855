"""Putting one answer together from generations: usage, several choices, chunk edits.

- :class:`UsageFolder`: OpenAI sends a usage-only chunk (``choices: []``) only
  when the caller asked (``stream_options.include_usage``); code that reads
  ``chunk.choices[0]`` breaks on it. Unasked, the usage goes onto the final
  chunk instead, which is held back until the usage arrives.
- :class:`MergedChoices`: ``n`` choices are ``n`` separate generations on the
  runtime's parallel slots (the runtime's own ``n`` counts usage for one choice
  and gives alike samples), interleaved as they come, each re-indexed, under
  one id, with their usage added up. Its wait for a slot is its first
  choice's: that one is told (each change, then ``started``), the others'
  never, so the comments come once, before the first token.
- :class:`MapChunks`: a per-chunk edit, for the rare requests that need one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ails.providers.base import ChunkStream, QueueWait
from ails.types import Chunk, Usage


class UsageFolder:
    """Folds the usage-only chunk into the last chunk that finished a choice."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: Chunk | None = None

    def add(self, chunk: Chunk, out: list[Chunk]) -> None:
        choices = chunk.choices
        if not choices:
            if chunk.usage is not None and self.held is not None:
                self.held.usage = chunk.usage
                out.append(self.held)
                self.held = None
            return  # a usage-only chunk is never passed on unasked
        for choice in choices:
            if choice.finish_reason is not None:
                if self.held is not None:
                    out.append(self.held)
                self.held = chunk
                return
        out.append(chunk)

    def flush(self, out: list[Chunk]) -> None:
        """The stream ended (or failed) before its usage: hand the held chunk over."""
        if self.held is not None:
            out.append(self.held)
            self.held = None


def queue_seconds(stream: ChunkStream) -> float:
    """Seconds the generation under ``stream`` waited for its slot, once known
    (a :class:`~ails.local.bridge.LocalStream`'s, through the wrappers here)."""
    seconds: float = getattr(stream, "queue_seconds", 0.0)
    return seconds


class _Over(ChunkStream):
    """A stream made of others; closing it closes them."""

    def __init__(self, inner: Sequence[ChunkStream]) -> None:
        self.inner = list(inner)

    @property
    def queue_seconds(self) -> float:
        """The first stream's wait: the one before the answer began."""
        return queue_seconds(self.inner[0])

    async def aclose(self) -> None:
        for stream in self.inner:
            await stream.aclose()


class FoldUsage(_Over):
    """:class:`UsageFolder` over a stream that ends with a usage-only chunk."""

    def __init__(self, inner: ChunkStream) -> None:
        super().__init__([inner])
        self._folder = UsageFolder()
        self._ended = False
        self._error: BaseException | None = None

    async def __anext__(self) -> list[Chunk]:
        out: list[Chunk] = []
        while not out:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._ended:
                raise StopAsyncIteration
            try:
                batch = await self.inner[0].__anext__()
            except StopAsyncIteration:
                self._ended = True
                self._folder.flush(out)
                continue
            except Exception as exc:  # what came before the error is handed over first
                self._folder.flush(out)
                if not out:
                    raise
                self._error = exc
                continue
            if type(batch) is QueueWait:
                return batch
            for chunk in batch:
                self._folder.add(chunk, out)
        return out


class MapChunks(_Over):
    """Applies ``edit`` to every chunk in place."""

    def __init__(self, inner: ChunkStream, edit: Callable[[Chunk], None]) -> None:
        super().__init__([inner])
        self._edit = edit

    async def __anext__(self) -> list[Chunk]:
        batch = await self.inner[0].__anext__()
        for chunk in batch:
            self._edit(chunk)
        return batch


def empty_top_logprobs(chunk: Chunk) -> None:
    """``logprobs: true`` without ``top_logprobs``: OpenAI sends ``top_logprobs: []``.
    The runtime has no such setting (0 turns logprobs off), so it is asked for one
    alternative and the list is emptied here."""
    for choice in chunk.choices:
        logprobs: Any = choice.logprobs
        if isinstance(logprobs, dict):
            for entry in logprobs.get("content") or ():
                if isinstance(entry, dict):
                    entry["top_logprobs"] = []


async def _next(stream: ChunkStream) -> list[Chunk] | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


class MergedChoices(_Over):
    """Choice ``i`` is stream ``i``; chunks keep arrival order, usage comes last, summed.

    The prompt is the same for every choice, so it is counted once, as OpenAI
    counts it; completion tokens are added up.

    Choice 0 entered the line first, so no other choice can start before it:
    its :class:`QueueWait` batches are the answer's, until it starts or a
    chunk goes out. The others' are dropped (they wait after the first token
    or while choice 0 waits too, already told).
    """

    def __init__(self, inner: Sequence[ChunkStream]) -> None:
        super().__init__(inner)
        self._pending: dict[asyncio.Future[list[Chunk] | None], int] = {}
        self._started = False
        self._first: Chunk | None = None
        self._usage: Usage | None = None
        self._ended = False
        #: Whether a wait may still be told: nothing of the answer went out yet.
        self._waiting = True

    async def __anext__(self) -> list[Chunk]:
        if not self._started:
            self._started = True
            for i, stream in enumerate(self.inner):
                self._pending[asyncio.ensure_future(_next(stream))] = i
        while self._pending:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            out: list[Chunk] = []
            wait: QueueWait | None = None
            for task in done:
                i = self._pending.pop(task)
                try:
                    batch = task.result()
                except BaseException:
                    await self.aclose()
                    raise
                if batch is None:
                    continue
                self._pending[asyncio.ensure_future(_next(self.inner[i]))] = i
                if type(batch) is QueueWait:
                    if i == 0 and self._waiting and not out:
                        self._waiting = not batch.started
                        wait = batch
                    continue
                self._take(i, batch, out)
            if wait is not None and not out:
                return wait
            if out:
                self._waiting = False
                return out
        if self._ended:
            raise StopAsyncIteration
        self._ended = True
        first = self._first
        if self._usage is None or first is None:
            raise StopAsyncIteration
        return [Chunk(id=first.id, created=first.created, model=first.model, usage=self._usage)]

    def _take(self, i: int, batch: list[Chunk], out: list[Chunk]) -> None:
        for chunk in batch:
            first = self._first
            if first is None:
                first = self._first = chunk
            else:
                chunk.id = first.id
                chunk.created = first.created
            if not chunk.choices:
                if chunk.usage is not None:
                    self._add_usage(chunk.usage)
                continue
            for choice in chunk.choices:
                choice.index = i
            out.append(chunk)

    def _add_usage(self, usage: Usage) -> None:
        total = self._usage
        if total is None:
            self._usage = Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
            return
        total.completion_tokens += usage.completion_tokens
        total.total_tokens = total.prompt_tokens + total.completion_tokens

    async def aclose(self) -> None:
        pending, self._pending = list(self._pending), {}
        for task in pending:
            task.cancel()
        # A cancelled read stops its generation (LocalStream); wait until it has.
        await asyncio.gather(*pending, return_exceptions=True)
        await super().aclose()


__all__ = ["FoldUsage", "MapChunks", "MergedChoices", "UsageFolder", "empty_top_logprobs"]
