"""A streamed response whose head goes out with its first bytes.

aiohttp sends a :class:`~aiohttp.web.StreamResponse`'s head alone as soon as
it is prepared; an SSE stream's first event follows at once, so that is one
send (a system call, a TCP segment) more per stream for nothing. aiohttp has
no public switch for it: its own :class:`~aiohttp.web.Response` turns it off
by overriding the class attribute ``_send_headers_immediately`` (there since
aiohttp 3.12 began to send a head with the first body bytes), and
:class:`DeferredHeadResponse` does the same.

On an aiohttp without that attribute (before 3.12, or a later one that renames
it) the override is inert and the head goes out alone, as by default: every
answer stays correct, one send dearer; being a class attribute of our own
subclass, it cannot fail the way setting it on an instance of a slotted class
would. ``tests/test_aiohttp_seams.py`` watches the bytes a prepared
response has written, so that change fails a test instead of passing unseen.
"""

from __future__ import annotations

from aiohttp import web

#: Whether this aiohttp has the switch the override relies on.
DEFERS_HEAD = isinstance(getattr(web.StreamResponse, "_send_headers_immediately", None), bool)


#: The head of every event stream the gateway sends (chat and the dialects).
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell a buffering reverse proxy (nginx) not to
}


class DeferredHeadResponse(web.StreamResponse):
    """A :class:`~aiohttp.web.StreamResponse` whose head is sent with the
    first :meth:`write` (or :meth:`write_eof`), in the same send."""

    _send_headers_immediately = False


__all__ = ["DEFERS_HEAD", "SSE_HEADERS", "DeferredHeadResponse"]
