"""Reading a request's body within a limit, and what a client without a key may send.

aiohttp reads a body only when asked, so whatever can be decided from the head
is decided before: a request that its key alone refuses never has its body
read (:meth:`~ails.server.auth.Authenticator.body_limit`), and a keyless one
under ``--allow-signed`` is read only up to ``--max-anonymous-body-bytes``,
since its signature can be checked only on the whole body.
"""

from __future__ import annotations

from aiohttp import web

from ails.server.errors import GatewayError


def too_large(limit: int, *, anonymous: bool = False) -> GatewayError:
    if anonymous:
        message = (
            f"a request without an API key may carry at most {limit} bytes; send a key to send more"
        )
    else:
        message = f"the request body is larger than the limit of {limit} bytes"
    return GatewayError(413, message, code="body_too_large")


async def read_body(request: web.Request, limit: int, *, anonymous: bool = False) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` bytes
    (from ``Content-Length``, or while reading a chunked one)."""
    content = request.content
    if content.is_eof():
        # All of it has arrived (a small body comes with its head): taken
        # from the buffer at once. ``request.read()`` would loop on
        # ``readany`` (one more call to learn the end) and copy it twice,
        # about ten Python calls per request. Nothing else reads the body.
        whole = content.read_nowait()
        if len(whole) > limit:
            raise too_large(limit, anonymous=anonymous)
        return whole
    if (request.content_length or 0) > limit:
        raise too_large(limit, anonymous=anonymous)
    if not anonymous:
        try:
            return await request.read()  # aiohttp's client_max_size is this limit
        except web.HTTPRequestEntityTooLarge:
            raise too_large(limit) from None
    data = bytearray()
    while chunk := await request.content.readany():
        data += chunk
        if len(data) > limit:
            raise too_large(limit, anonymous=True)
    return bytes(data)


__all__ = ["read_body", "too_large"]
