"""Everything an aiohttp response has buffered, taken in one step.

An upstream streams each SSE event as an HTTP chunk of its own, and aiohttp's
``StreamReader`` keeps one buffer entry per HTTP chunk: ``read_nowait()`` and
``readany()`` take them one by one, and each one costs five Python calls
(the chunk, two ``resume_reading``, a ``data_received(b"")``, the transport's
resume). A read that finds a whole answer waiting (a short answer, or a busy
gateway that comes back to a stream after a while) pays that per event:
measured, about a fifth of a gateway's 10-chunk stream.

:func:`drain` does what ``read_nowait()`` does for all of them at once: the
same bytes, the same state after (size, cursor, HTTP chunk splits), the
same exception raised, and flow control resumed once instead of per chunk
(all in one synchronous call, so nobody can tell the difference). It leans
on the reader's private fields, so it is used only when the installed
aiohttp has them all (:data:`BULK`); tests/test_aiohttp_seams.py checks that
it does and that the result is ``read_nowait()``'s, so that a change in
aiohttp fails there instead of passing unseen.
"""

from __future__ import annotations

from aiohttp import StreamReader

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
BULK = all(hasattr(StreamReader, name) for name in FIELDS)


def drain(content: StreamReader) -> bytes:
    """``content.read_nowait()``: what is buffered (``b""``: nothing), in one step."""
    buffer = content._buffer
    if not BULK or len(buffer) < 2 or content._waiter is not None:
        return content.read_nowait()  # one entry or none: nothing to save
    if content._exception is not None:
        raise content._exception
    content._timer.assert_timeout()
    offset = content._buffer_offset
    if offset:
        buffer[0] = buffer[0][offset:]
        content._buffer_offset = 0
    data = b"".join(buffer)
    buffer.clear()
    size = content._size = content._size - len(data)
    cursor = content._cursor = content._cursor + len(data)
    splits = content._http_chunk_splits
    # As read_nowait: drop the splits behind the cursor, then let the
    # protocol read again if the buffer is low (it checks after each entry;
    # the last check is the one that passes if any does).
    while splits and splits[0] < cursor:
        splits.popleft()
    if size < content._low_water and (splits is None or len(splits) < content._low_water_chunks):
        content._protocol.resume_reading()
    return data


__all__ = ["BULK", "drain"]
