"""What the gateway does while its shared store (Redis) is unreachable.

:class:`PolicyStore` wraps the store and turns :class:`StateUnavailable` into
the configured answer (``--redis-failure``):

* ``closed`` (the default): a check that needs the store (the replay cache of
  signed requests, a quota, a key's rate limit) is refused with 503
  ``state_unavailable``: a replica that cannot see the others' counts must not
  hand out what they may already have spent;
* ``open``: the check is skipped with a warning (at most one every
  ``warn_every`` seconds), and the request goes on unchecked.

Whatever the policy, the response cache is bypassed, and tokens that could not
be recorded after an answer are lost with a warning: the answer exists, and
refusing it then would waste it. Requests that need nothing from the store
never notice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from ails.server.errors import GatewayError
from ails.server.limits import window_slot
from ails.server.state import Count, Counter, StateStore, StateUnavailable

log = logging.getLogger("ails.server")

POLICIES = ("closed", "open")


def unavailable_error() -> GatewayError:
    return GatewayError(
        503,
        "shared state (Redis) is unreachable; this gateway cannot check signed requests, "
        "quotas or rate limits until it is back. Retry in a moment.",
        type="server_error",
        code="state_unavailable",
        headers={"retry-after": "1"},
    )


class PolicyStore(StateStore):
    def __init__(self, inner: StateStore, *, fail_open: bool, warn_every: float = 10.0) -> None:
        self.inner = inner
        self.fail_open = fail_open
        self.warn_every = warn_every
        self._next_warning = 0.0

    def _refuse_or_warn(self, exc: StateUnavailable, what: str) -> None:
        if not self.fail_open:
            raise unavailable_error() from None
        self._warn(f"{what} skipped (--redis-failure open): {exc}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + self.warn_every
            log.warning("shared state unreachable: %s", message)

    async def seen_before(self, key: str, ttl: float) -> bool:
        try:
            return await self.inner.seen_before(key, ttl)
        except StateUnavailable as exc:
            self._refuse_or_warn(exc, "the replay check")
            return False

    async def consume_all(self, counters: Sequence[Counter]) -> tuple[bool, list[Count]]:
        try:
            return await self.inner.consume_all(counters)
        except StateUnavailable as exc:
            self._refuse_or_warn(exc, "a quota or rate limit")
            now = time.time()
            return True, [Count(0, c.limit, window_slot(now, c.window)[1]) for c in counters]

    async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
        try:
            return await self.inner.add(amounts, window)
        except StateUnavailable as exc:
            self._warn(f"{sum(amounts.values())} tokens used could not be counted: {exc}")
            return {}

    async def cache_get(self, key: str) -> bytes | None:
        try:
            return await self.inner.cache_get(key)
        except StateUnavailable:
            return None  # a miss: the backend answers

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        with contextlib.suppress(StateUnavailable):  # not cached this time
            await self.inner.cache_set(key, value, ttl)

    async def health(self) -> str | None:
        return await self.inner.health()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def watch(self, on_call: Callable[[float, bool], None]) -> None:
        self.inner.watch(on_call)


__all__ = ["POLICIES", "PolicyStore", "unavailable_error"]
