"""A minimal HTTP/1.1 keep-alive client on raw asyncio streams, for the load
generator: a request is one pre-built byte string, a response is read by
Content-Length or chunked framing, nothing is parsed beyond that.

Measured here, aiohttp's client spent more CPU per request than the servers
under test, so the load generator saturated first and every ratio was
compressed; this one costs a fraction of that, so "direct" runs far above
any server measured behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


def build_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn:
    """One keep-alive connection; reopened when the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            i = lower.find(b"content-length:")
            length = int(lower[i + 15 : lower.index(b"\r\n", i)]) if i >= 0 else 0
            body = await reader.readexactly(length)
        if b"connection: close" in lower:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None
