"""Server-Sent Events: an incremental decoder (the encoder is :mod:`ails.wire`).

The decoder follows the WHATWG event-stream rules (HTML § 9.2.6) exactly, where
the common SDK parsers do not:

* Input is bytes in reads of any size. Text is UTF-8; invalid bytes become
  U+FFFD, and a character split across reads survives.
* One byte-order mark at the very start of the stream is dropped; any later one
  is ordinary text.
* A line ends with CRLF, LF or CR. A CRLF split across two reads is one line end.
* A line starting with ``:`` is a comment (kept in ``comments`` when asked:
  ``ails serve`` tells a waiting request its place in one). Otherwise the field name runs to the
  first colon and the value follows it, less one leading space if present; a
  line with no colon is a field name with an empty value.
* ``data`` appends its value to the data buffer (values joined by LF).
  ``event`` sets the type of the next event (``"message"`` when unset or
  empty). ``id`` sets the last event ID unless its value contains NUL; that ID
  persists across events. ``retry`` is honoured only when its value is all ASCII
  digits. Other fields are ignored.
* A blank line dispatches the event, but only if a ``data`` field was seen (an
  empty ``data:`` counts), so ``event: ping`` or a lone ``id:`` yields nothing.
  The data buffer and event type are then reset; the last event ID is not.
* An event with no blank line after it when the stream ends is dropped.

The one error the decoder raises is :class:`~ails.errors.ProtocolError` with
code ``sse_line_too_long``, for a line longer than ``max_line_bytes``; it is
checked as bytes arrive, so a hostile stream cannot grow the buffer unbounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from ails.errors import ProtocolError

__all__ = [
    "Event",
    "SSEDecoder",
    "aiter_events",
    "iter_events",
]

DEFAULT_MAX_LINE_BYTES = 1_048_576
#: A plain read that completed no event.
_NONE_YET = (b"", b"", 0)


class Event:
    """One dispatched event. ``id`` is the last event ID in effect when it was
    dispatched; ``retry`` the reconnection time (ms) set within its own block."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self,
        data: str = "",
        event: str = "message",
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.data == other.data
            and self.event == other.event
            and self.id == other.id
            and self.retry == other.retry
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"Event(data={self.data!r}, event={self.event!r}, id={self.id!r}, retry={self.retry!r})"
        )


class SSEDecoder:
    """Feed it the bytes of one stream, read by read; it returns finished events."""

    def __init__(
        self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, keep_comments: bool = False
    ) -> None:
        self.max_line_bytes = max_line_bytes
        #: With ``keep_comments``: the text of each comment line fed since the
        #: caller last emptied the list (after the ``:``), e.g. `` queued ahead=2``.
        self.comments: list[str] | None = [] if keep_comments else None
        #: Last valid ``retry`` value seen (ms), for the caller's reconnect policy.
        self.retry: int | None = None
        #: Last event ID, to send as ``Last-Event-ID`` on reconnect.
        self.last_event_id: str | None = None
        # _reset_stream's fields, set here without the call: a gateway makes a
        # decoder per stream.
        self._tail = b""
        self._after_cr = False
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self._block_retry: int | None = None

    def _reset_stream(self) -> None:
        self._tail = b""  # bytes of the line not yet terminated; never holds a CR
        self._after_cr = False  # last read ended in CR: a leading LF next is its pair
        self._at_start = True  # the first line may still begin with a BOM
        self._data = []  # non-empty once a data field is seen in this block
        self._event = ""
        self._block_retry = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Take one read; return every event it completed, in order."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if b"\r" in chunk:
            # A CR ending this read ends its line now; remember it only so that an
            # LF opening the next read is taken as its pair, not as a blank line.
            self._after_cr = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._tail + chunk if self._tail else chunk
        # Only a buffer over the limit can hold an overlong line, so the split runs
        # rarely; checking complete lines too keeps the error independent of how
        # the stream was cut into reads.
        if len(buf) > self.max_line_bytes and (
            max(map(len, buf.split(b"\n"))) > self.max_line_bytes
        ):
            self._tail = b""
            raise ProtocolError(
                f"SSE line longer than {self.max_line_bytes} bytes", code="sse_line_too_long"
            )
        end = buf.rfind(b"\n")
        if end < 0:
            self._tail = buf
            return []
        self._tail = buf[end + 1 :]
        # Line ends are ASCII, so they never fall inside a UTF-8 sequence and a
        # replacement never swallows one: decoding all complete lines at once
        # equals decoding each line alone, and costs one call per read.
        lines = buf[:end].decode("utf-8", "replace").split("\n")
        if self._at_start:
            self._at_start = False
            if lines[0][:1] == "\ufeff":
                lines[0] = lines[0][1:]
        return self._process(lines)

    def feed_plain(self, chunk: bytes, sep: bytes = b",") -> tuple[bytes, bytes, int] | None:
        """Take one read if it is plain, else leave it for :meth:`feed`.

        Plain: every event it completes is a single ``data: X`` line and a
        blank line (an upstream's usual chunk), with no CR and nothing carried
        over from an event not yet dispatched. Then this returns
        ``(frames, data, n)``: those ``n`` events' bytes exactly as read
        (``data: X\\n\\n`` each), and their data joined by ``sep`` (which
        holds no line break; ``,`` makes JSON texts a JSON array's inside),
        and keeps the rest of the read for the next one; ``n`` is 0 when no
        event is complete yet. The events are the ones :meth:`feed` would have
        made. ``None``: not plain, nothing taken; call :meth:`feed` with the
        same read.

        A few C-level byte operations on the whole read, not a loop per line.
        """
        if (
            self._after_cr
            or self._data
            or self._event
            or self._block_retry is not None
            or b"\r" in chunk
        ):
            return None
        buf = self._tail + chunk if self._tail else chunk
        if self._at_start:
            if buf[:3] == b"\xef\xbb\xbf" or len(buf) < 3:
                return None  # a byte-order mark, or not known yet: feed() drops it
            self._at_start = False
        if len(buf) > self.max_line_bytes:
            return None  # feed() checks the line limit
        end = buf.rfind(b"\n\n") + 2
        if end < 2:
            self._tail = buf
            return _NONE_YET
        if buf[:6] != b"data: ":
            return None
        frames = buf[:end] if end < len(buf) else buf
        # Every "\n\ndata: " is then a boundary, and a line break left over is
        # a line of another kind, or an event of several lines: not plain.
        data = frames[6:-2].replace(b"\n\ndata: ", sep)
        if b"\n" in data:
            return None
        self._tail = buf[end:]
        # Each event is its data and 8 bytes ("data: ", "\n\n"); sep between.
        return frames, data, (len(frames) - len(data) - len(sep)) // (8 - len(sep))

    def _process(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        data = self._data
        for line in lines:
            if line[:6] == "data: ":  # the hot path: one JSON payload per line
                data.append(line[6:])
            elif not line:
                if data:
                    events.append(
                        Event(
                            "\n".join(data),
                            self._event or "message",
                            self.last_event_id,
                            self._block_retry,
                        )
                    )
                    data = self._data = []
                self._event = ""
                self._block_retry = None
            else:
                colon = line.find(":")
                if colon == 0:
                    if self.comments is not None:
                        self.comments.append(line[1:])
                    continue
                if colon < 0:
                    name, value = line, ""
                else:
                    name, value = line[:colon], line[colon + 1 :]
                    if value[:1] == " ":
                        value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    self._event = value
                elif name == "id":
                    if "\0" not in value:
                        self.last_event_id = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    try:
                        ms = int(value)
                    except ValueError:  # past Python's limit on digits: no sane delay
                        continue
                    self.retry = self._block_retry = ms
        return events

    def end(self) -> list[Event]:
        """The stream has ended. An event with no blank line after it is
        dropped, per WHATWG, so this returns ``[]``; it also readies the
        decoder for a new stream, keeping ``retry`` and ``last_event_id``."""
        self._reset_stream()
        return []


def iter_events(
    chunks: Iterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[Event]:
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.end()


async def aiter_events(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[Event]:
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.end():
        yield event
