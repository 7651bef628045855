"""The response cache (``--cache-ttl``): identical deterministic requests are
answered once.

Only a non-streamed request whose ``temperature`` is explicitly 0 is cached: a
sampled answer is meant to differ from one call to the next, and a stream is
paced by the backend. The key is the SHA-256 of the request as it goes to the
backend, in canonical JSON (keys sorted): the model after alias resolution, so
an alias and its target share answers, and every other field after the
gateway's own changes (``--max-tokens-cap``), except those that cannot change
the answer: ``user`` (an end-user id for the provider's abuse monitoring),
``stream`` and ``stream_options``. The value is the completion's bytes, served
again as they came (same ``id``). Only successful completions are kept.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from ails.server.state import StateStore

#: Fields that do not change the answer, left out of the key.
IGNORED = frozenset({"user", "stream", "stream_options"})

_canonical = msgspec.json.Encoder(order="sorted").encode


def cache_key(body: dict[str, Any], model: str) -> str | None:
    """The cache key of ``body`` routed to ``model``; None when it is not cacheable."""
    if body.get("stream") is True:
        return None
    temperature = body.get("temperature")
    if temperature is None or isinstance(temperature, bool) or temperature != 0:
        return None
    fields = {k: v for k, v in body.items() if k not in IGNORED}
    fields["model"] = model
    fields["temperature"] = 0  # 0 and 0.0 ask for the same answer
    return "cache:" + hashlib.sha256(_canonical(fields)).hexdigest()


class ResponseCache:
    def __init__(self, store: StateStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    async def get(self, key: str) -> bytes | None:
        return await self.store.cache_get(key)

    async def put(self, key: str, answer: bytes) -> None:
        await self.store.cache_set(key, answer, self.ttl)


__all__ = ["IGNORED", "ResponseCache", "cache_key"]
