"""Reading a gateway's SSE answer line by line in the queue tests."""

from __future__ import annotations

import aiohttp


async def lines_until(resp: aiohttp.ClientResponse, marker: str) -> list[str]:
    """The stream's lines up to (not including) the first one containing ``marker``."""
    seen: list[str] = []
    while True:
        line = (await resp.content.readline()).decode()
        assert line, f"the stream ended before {marker!r}: {seen}"
        if marker in line:
            return seen
        seen.append(line.rstrip("\n"))
