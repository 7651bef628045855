"""One generation as a stream: the chunks its thread posted, out as batches.

The runtime thread's side lives in :mod:`ails.local.generation`. Stopping is a
flag its callback reads: ``aclose``, a cancelled read, the stream being
garbage-collected, or interpreter exit set it, and generation stops at the
next token.

A generation enters the runtime only with a slot of the model's
:class:`~ails.local.slots.SlotGate`; while it waits, the stream yields
:class:`~ails.providers.base.QueueWait` batches (its place, at each change
and every :data:`QUEUE_NOTE_EVERY` seconds) when it was asked to announce
the wait, and the idle timeout does not run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ails.errors import AilsError, BadRequest, ProtocolError, Timeout, UpstreamUnavailable
from ails.local.choices import UsageFolder
from ails.local.generation import (
    ACTIVE,
    END,
    GRANTED,
    Generation,
    Place,
    runtime_error,
    stop_all,
)
from ails.local.slots import DEFAULT_MAX_QUEUE, SlotGate
from ails.providers.base import ChunkStream, QueueWait, Timeouts
from ails.types import Chunk

_EXPIRED = object()
#: Seconds between two notes of the same place in the line.
QUEUE_NOTE_EVERY = 5.0


class LocalStream(ChunkStream):
    """The answer of one generation, a batch of every chunk that arrived since the
    last read. Deadlines are checked only while a read waits (a slow consumer is
    not an idle model); the idle one starts when the generation has its slot."""

    __slots__ = (
        "_announce",
        "_closed",
        "_finished",
        "_folder",
        "_gen",
        "_idle",
        "_last",
        "_max_queue",
        "_noted",
        "_queued_at",
        "_total_deadline",
        "ahead",
        "chunks_seen",
        "provider",
        "queue_seconds",
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
        gate: SlotGate | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        announce: bool = False,
        text: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._gen = Generation(server, body, loop, model, gate, text)
        #: Unasked, the runtime's usage goes onto the final chunk (choices.UsageFolder).
        self._folder = None if include_usage else UsageFolder()
        self.provider = provider
        self._closed = False
        self._finished = False
        self.chunks_seen = 0
        self._idle = timeouts.idle
        self._last = loop.time()
        self._total_deadline = self._last + timeouts.total if timeouts.total is not None else None
        self._max_queue = max_queue
        #: Yield QueueWait batches while waiting (else the wait is silent).
        self._announce = announce
        #: When the generation joined the line; None once it has a slot.
        self._queued_at: float | None = None
        self._noted = 0.0
        #: Requests ahead while waiting; seconds waited for the slot, once known.
        self.ahead = 0
        self.queue_seconds = 0.0

    def start(self, *, first: bool = False) -> None:
        """Take a slot, or join the line for one (:class:`QueueFull` past its limit);
        ``first``: a request's follow-up generation, at the head of the line
        (:meth:`SlotGate.enter`)."""
        gen = self._gen
        if gen.gate is None:
            ACTIVE.add(gen)
            gen.thread.start()
            return
        ahead = gen.gate.enter(gen, max_queue=self._max_queue, provider=self.provider, first=first)
        if ahead is None:  # a free slot: in at once
            ACTIVE.add(gen)
            gen.thread.start()
        else:
            self._queued_at = self._noted = gen.loop.time()
            gen.items.append(Place(ahead))

    @property
    def queued(self) -> bool:
        """Still waiting for a slot."""
        return self._queued_at is not None

    async def wait_started(self) -> None:
        """Wait for the runtime's first event; raise its error if that is one.
        An announced stream returns as soon as it is queued instead: its first
        batch says so.

        ``connect`` calls this so that a refused request (a prompt over the
        context, say) fails in ``connect``, where the router may still fall back.
        """
        gen = self._gen
        while True:
            while not gen.items:
                await self._wait()
            first = gen.items[0]
            if type(first) is not Place and first is not GRANTED:
                break
            if self._announce and type(first) is Place:
                return
            self._queue_note()
        first = gen.items[0]
        if isinstance(first, Chunk) and first.error is None:
            return
        gen.items.popleft()
        await self.aclose()
        if first is END:
            raise ProtocolError(
                "the local runtime ended the answer before sending anything",
                provider=self.provider,
            )
        raise self._as_error(first)

    def _queue_note(self, beat: bool = False) -> QueueWait | None:
        """Take the line's news at the head of the items: what to tell the
        consumer (the place, or the slot taken), if anything."""
        items = self._gen.items
        queued_at = self._queued_at
        if queued_at is None:
            return None
        now = self._gen.loop.time()
        note = None
        while items and (type(items[0]) is Place or items[0] is GRANTED):
            item = items.popleft()
            if item is GRANTED:
                self._queued_at = None
                self.queue_seconds = now - queued_at
                self._last = now  # the idle timeout starts with the slot
                return QueueWait(0, self.queue_seconds, started=True)
            assert isinstance(item, Place)
            self.ahead = item.ahead
            note = QueueWait(item.ahead, now - queued_at)
        if note is None and beat:
            note = QueueWait(self.ahead, now - queued_at)
        if note is not None:
            self._noted = now
        return note

    async def __anext__(self) -> list[Chunk]:
        items = self._gen.items
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._queued_at is not None:
                note = self._queue_note(beat=self._beat_due())
                if note is not None:
                    return note
                if self._queued_at is not None and not items:
                    await self._wait()
                    continue
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
                if item is END:
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
            self._stop_now()
            raise
        finally:
            gen.waiter = None
            if handle is not None:
                handle.cancel()
        if waiter.result() is _EXPIRED and not gen.items:
            assert deadline is not None
            kind = deadline[1]
            if kind == "queue":
                return  # time to say again where the request stands
            await self.aclose()
            if kind == "idle":
                msg = (
                    f"no token for {self._idle:g} s (idle timeout) after {self.chunks_seen} chunks"
                )
            else:
                msg = "the total time limit passed before the answer ended"
            raise Timeout(msg, kind=kind, provider=self.provider)

    def _beat_due(self) -> bool:
        return self._announce and self._gen.loop.time() >= self._noted + QUEUE_NOTE_EVERY

    def _deadline(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        if self._queued_at is not None:  # waiting for a slot is not idling
            if self._announce:
                best = (self._noted + QUEUE_NOTE_EVERY, "queue")
        elif self._idle is not None:
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
        """Stop generating at the next token, or leave the line; returns at once
        (the slot frees itself within one token time). Safe to call twice."""
        self._stop_now()

    def _stop_now(self) -> None:
        self._closed = True
        gen = self._gen
        gen.stop = True
        if self._queued_at is not None and gen.gate is not None and gen.gate.withdraw(gen):
            self._queued_at = None
            gen._post(END)  # it never entered the runtime: nothing left to wait for

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


__all__ = ["QUEUE_NOTE_EVERY", "LocalStream", "runtime_error", "stop_all"]
