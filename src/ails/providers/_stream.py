"""The chunks of one streamed HTTP answer, with idle-content and total deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from ails.errors import (
    CONNECTION_FAILED,
    AilsError,
    ProtocolError,
    ProviderError,
    Timeout,
    UpstreamUnavailable,
    error_for_status,
)
from ails.providers._drain import drain
from ails.providers._lazy import LazyBatch
from ails.providers.base import Batch, ChunkStream, QueueWait, Timeouts
from ails.sse import Event, SSEDecoder
from ails.types import Chunk, ChunkMeta
from ails.wire import queue_ahead

_chunk_decoder = msgspec.json.Decoder(Chunk, strict=False)
_decode_one = _chunk_decoder.decode
#: What a gateway looks at in each chunk of a plain read (see LazyBatch).
_decode_meta = msgspec.json.Decoder(list[ChunkMeta], strict=False).decode
#: The end marker as a plain event.
_DONE_FRAME = b"data: [DONE]\n\n"

_CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, OSError)


def in_band_error(err: Any, *, provider: str) -> ProviderError:
    """An ``{"error": {...}}`` event sent after the stream started."""
    if isinstance(err, dict):
        message = str(err.get("message") or "upstream reported an error mid-stream")
        code = err.get("code") if isinstance(err.get("code"), str) else None
        status = err.get("status") if isinstance(err.get("status"), int) else None
    else:
        message, code, status = str(err), None, None
    if status is not None and 400 <= status < 600:
        return error_for_status(status, message, provider=provider, body=err, code=code)
    return UpstreamUnavailable(message, provider=provider, code=code, body=err)


class _Aborted(Exception):
    """Put into the response's reader to wake a read blocked past a deadline."""


class SSEChunkStream(ChunkStream):
    """Chunks of one streamed HTTP answer, a batch per network read.

    The deadlines run on one timer handle that re-arms itself, so the hot path
    only stores a timestamp per read with content: no ``wait_for`` per read.
    It is armed lazily, before the first read that would wait or when a batch
    that is not the last goes out: an answer whose whole body has arrived by
    its first read (a short one) never needs it.

    The events are OpenAI chunks here; an upstream with events of its own
    (Anthropic's) subclasses this and overrides :meth:`_decode`, keeping the
    deadlines, the reads and the truncation rule. Events that make no chunk
    (Anthropic's ``ping``) are not content: they do not reset the idle limit.
    """

    #: What a complete stream ends with, for the truncation error.
    END_SIGNAL = "[DONE] or a finish_reason"
    #: The events are OpenAI's bare ``data:`` lines, so a plain read (see
    #: :meth:`ails.sse.SSEDecoder.feed_plain`) skips the line-by-line parse.
    #: A subclass whose events are named (Anthropic's) sets False.
    PLAIN_EVENTS = True

    __slots__ = (
        "_armed",
        "_decode_chunk",
        "_decoder",
        "_done",
        "_finished",
        "_handle",
        "_idle",
        "_last_content",
        "_loop",
        "_pending",
        "_reading",
        "_resp",
        "_timed_out",
        "_total_deadline",
        "chunks_seen",
        "closed",
        "provider",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        *,
        provider: str,
        timeouts: Timeouts,
        started: float,
        decode: Callable[[str], Chunk] | None = None,
    ) -> None:
        self._resp = resp
        self.provider = provider
        #: One event's JSON into a chunk: chat chunks, or another endpoint's
        #: (a legacy text completion's, :func:`ails.types.text_chunk`).
        self._decode_chunk = decode or _decode_one
        #: Comments are kept: ``: queued ahead=N`` (a gateway's busy model) is passed up.
        self._decoder = SSEDecoder(keep_comments=True)
        self._done = False
        self._finished = False
        self.closed = False
        self._reading = False
        self._timed_out: str | None = None
        self._pending: AilsError | None = None
        self.chunks_seen = 0
        self._loop = asyncio.get_running_loop()
        self._idle = timeouts.idle
        self._last_content = self._loop.time()
        self._total_deadline = started + timeouts.total if timeouts.total is not None else None
        self._handle: asyncio.TimerHandle | None = None
        self._armed = False

    # -- deadlines -------------------------------------------------------------

    def _deadline(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        if self._idle is not None:
            best = (self._last_content + self._idle, "idle")
        if self._total_deadline is not None and (best is None or self._total_deadline < best[0]):
            best = (self._total_deadline, "total")
        return best

    def _arm(self) -> None:
        self._armed = True
        deadline = self._deadline()
        if deadline is not None:
            self._handle = self._loop.call_at(deadline[0], self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        if self.closed:
            return
        deadline = self._deadline()
        if deadline is None:
            return
        when, kind = deadline
        # A slow consumer is not an idle upstream: only a read that is waiting counts.
        if self._loop.time() >= when and (self._reading or kind == "total"):
            self._timed_out = kind
            self._resp.content.set_exception(_Aborted())
            return
        self._handle = self._loop.call_at(max(when, self._loop.time() + 0.05), self._on_timer)

    def _timeout_error(self) -> Timeout:
        kind = self._timed_out or "idle"
        if kind == "idle":
            msg = f"no content for {self._idle:g} s (idle timeout) after {self.chunks_seen} chunks"
        else:
            msg = "the total time limit passed mid-stream"
        return Timeout(msg, kind=kind, provider=self.provider)

    # -- reading ---------------------------------------------------------------

    async def __anext__(self) -> Batch:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending
        if self._done:
            raise StopAsyncIteration
        content = self._resp.content
        feed = self._decoder.feed
        while True:
            self._reading = True
            try:
                # All that is buffered in one step (an HTTP chunk per event).
                data = drain(content)
                if not data:
                    if not self._armed:  # this read may wait: the deadlines start to count
                        self._arm()
                    data = await content.readany()
            except _Aborted:
                await self.aclose()
                raise self._timeout_error() from None
            except _CONNECTION_ERRORS as exc:
                await self.aclose()
                raise UpstreamUnavailable(
                    f"connection lost mid-stream after {self.chunks_seen} chunks ({exc!r})",
                    provider=self.provider,
                    code=CONNECTION_FAILED,
                ) from exc
            finally:
                self._reading = False
            if not data:
                await self.aclose()
                if self._finished:
                    raise StopAsyncIteration
                raise ProtocolError(
                    f"stream ended after {self.chunks_seen} chunks without "
                    f"{self.END_SIGNAL} (truncated answer)",
                    provider=self.provider,
                    code="stream_truncated",
                )
            plain = self._decoder.feed_plain(data) if self.PLAIN_EVENTS else None
            if plain is not None:
                if not plain[2]:
                    continue  # a partial event: no content yet
                batch, error = self._decode_frames(*plain)
            else:
                try:
                    events = feed(data)
                except ProtocolError as exc:
                    await self.aclose()
                    exc.provider = self.provider
                    raise
                if self._decoder.comments:
                    wait = self._queue_wait()
                    if wait is not None and not events:
                        if not self._armed:
                            self._arm()
                        return wait
                if not events:
                    continue  # keep-alive comments or a partial line: no content yet
                batch, error = self._decode(events)
            self.chunks_seen += len(batch)
            if error is not None:
                # Chunks that came before the error in the same read are delivered
                # first; the error is raised on the next call.
                await self.aclose()
                if batch:
                    self._pending = error
                    return batch
                raise error
            if batch:
                self._last_content = self._loop.time()
            if self._done:
                await self.aclose()
                if not batch:
                    raise StopAsyncIteration
            if batch:
                if not self._armed and not self._done:
                    self._arm()  # a slow consumer: the total limit still holds
                return batch

    @property
    def ended(self) -> bool:
        # [DONE] was read with the last batch, and no error waits to be raised.
        return self._done and self._pending is None

    def _queue_wait(self) -> QueueWait | None:
        """The last ``queued ahead=N`` among the comments just read. Such a
        comment is news, not a keep-alive: the wait for a busy model does not
        count against the idle timeout."""
        comments = self._decoder.comments
        assert comments is not None
        ahead = None
        for text in comments:
            n = queue_ahead(text)
            if n is not None:
                ahead = n
        comments.clear()
        if ahead is None:
            return None
        self._last_content = self._loop.time()
        return QueueWait(ahead)

    def _decode_frames(self, frames: bytes, data: bytes, n: int) -> tuple[Batch, AilsError | None]:
        """The chunks of ``n`` plain events (:meth:`SSEDecoder.feed_plain`):
        ``frames`` as read, ``data`` their texts joined by commas. Chat chunks
        that are all well-formed, with no in-band error, are decoded in one
        call (as one JSON array) and keep their frames, which a gateway
        forwards as they are; anything else goes event by event through
        :meth:`_decode`, which finds the chunk at fault. Only their
        :class:`ChunkMeta` is decoded here: the chunks are decoded on first
        use (:class:`LazyBatch`), where a field of the wrong type raises."""
        body = frames
        if frames.endswith(_DONE_FRAME) and (n == 1 or frames[-16:-14] == b"\n\n"):
            body = frames[:-14]  # len(_DONE_FRAME)
            data = data[:-7] if n > 1 else b""  # less ",[DONE]"
            n -= 1
        if self._decode_chunk is _decode_one and (body.isascii() or _is_utf8(body)):
            array = b"[" + data + b"]"
            try:
                chunks = _decode_meta(array)
            except msgspec.DecodeError:
                chunks = None
            # One event that is two JSON values ("{},{}") is not one chunk.
            if chunks is not None and len(chunks) == n:
                # Plain loops, not any() over generators: this runs for every read.
                done = body is not frames
                finished = self._finished or done  # after [DONE] nobody asks
                for chunk in chunks:
                    if chunk.error is not None:
                        break
                    if not finished:
                        for choice in chunk.choices:
                            if choice.finish_reason is not None:
                                finished = True
                else:
                    if done:
                        self._done = True
                    else:
                        self._finished = finished
                    return LazyBatch(chunks, body, array, self.chunks_seen, self.provider), None
        texts = frames[6:-2].decode("utf-8", "replace").split("\n\ndata: ")
        return self._decode([Event(text) for text in texts])

    def _decode(self, events: list[Event]) -> tuple[Batch, AilsError | None]:
        # Each chunk's text is kept beside it (it exists anyway: a reference,
        # not a copy), so a gateway forwards what the upstream sent.
        raw: list[str | None] = []
        batch = Batch((), raw)
        decode = self._decode_chunk
        for ev in events:
            text = ev.data
            if text == "[DONE]":
                self._done = True
                break
            if ev.event != "message":
                if ev.event == "error":
                    return batch, in_band_error(_loads_or_text(text), provider=self.provider)
                continue
            try:
                chunk = decode(text)
            except msgspec.DecodeError as exc:
                return batch, ProtocolError(
                    f"chunk {self.chunks_seen + len(batch)} is not valid chunk JSON: {exc}",
                    provider=self.provider,
                    code="invalid_chunk",
                )
            if chunk.error is not None:
                return batch, in_band_error(chunk.error, provider=self.provider)
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    self._finished = True
            batch.append(chunk)
            raw.append(text)
        return batch, None

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._done = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Releasing a half-read response would block on reading the rest: close it.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


def _is_utf8(data: bytes) -> bool:
    # An event's text is read as UTF-8 with U+FFFD for bad bytes; bytes
    # forwarded as they came must say the same.
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _loads_or_text(text: str) -> Any:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    return value.get("error", value) if isinstance(value, dict) else value
