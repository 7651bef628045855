"""Everything an aiohttp response has buffered, taken in one step.

An upstream streams each SSE event as an HTTP chunk of its own, and aiohttp's
``StreamReader`` keeps one buffer entry per HTTP chunk: ``read_nowait()`` and
``readany()`` take them one by one, and each one costs five Python calls
(the entry, two ``resume_reading``, a ``data_received(b"")``, the
transport's resume), even when reading was never paused. A read that finds a
whole answer waiting (a short answer, or a busy gateway that comes back to
a stream after a while) pays that per event: measured, about a tenth of a
gateway's 10-chunk stream.

:func:`drain` does what ``read_nowait()`` does for all of them at once: the
same bytes, the same state after (size, cursor, HTTP chunk splits), the
same exception raised, and the protocol resumed once if it was paused (its
``resume_reading`` on a protocol that is not paused changes nothing: it
feeds the parser nothing, and resumes a transport that reads already). It
leans on the reader's and the protocol's private fields, so it is used
only when the installed aiohttp has them all (:data:`BULK`);
tests/test_aiohttp_seams.py checks that it does and that the result is
``read_nowait()``'s, paused or not, so that a change in aiohttp fails
there instead of passing unseen.
"""

from __future__ import annotations

from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

#: The reader's fields :func:`drain` reads and writes.
FIELDS = (
    "_exception",
    "_timer",
    "_buffer",
    "_buffer_offset",
    "_size",
    "_cursor",
    "_http_chunk_splits",
    "_low_water",
    "_low_water_chunks",
    "_protocol",
    "_waiter",
)
#: Whether this aiohttp's reader has them (its ``__slots__``).
BULK = all(hasattr(StreamReader, name) for name in FIELDS) and hasattr(
    BaseProtocol, "_reading_paused"
)


def drain(content: StreamReader) -> bytes:
    """``content.read_nowait()``: what is buffered (``b""``: nothing), in one step."""
    if not BULK or content._waiter is not None:
        return content.read_nowait()
    if content._exception is not None:
        raise content._exception
    content._timer.assert_timeout()
    buffer = content._buffer
    if not buffer:
        return b""
    offset = content._buffer_offset
    if offset:
        buffer[0] = buffer[0][offset:]
        content._buffer_offset = 0
    if len(buffer) == 1:
        data = buffer.popleft()
    else:
        data = b"".join(buffer)
        buffer.clear()
    size = content._size = content._size - len(data)
    cursor = content._cursor = content._cursor + len(data)
    splits = content._http_chunk_splits
    # As read_nowait: drop the splits behind the cursor, then let a paused
    # protocol read again if the buffer is low (read_nowait checks after
    # each entry; the last check is the one that passes if any does).
    while splits and splits[0] < cursor:
        splits.popleft()
    protocol = content._protocol
    if (
        protocol._reading_paused
        and size < content._low_water
        and (splits is None or len(splits) < content._low_water_chunks)
    ):
        protocol.resume_reading()
    return data


__all__ = ["BULK", "drain"]
