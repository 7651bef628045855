"""Quotas and the gateway's shared state.

The arithmetic is pure (``parse_quota``, ``window_slot``). The state lives
behind :class:`StateStore`, a deliberately narrow async interface with two
atomic operations, so that a Redis store shared by several replicas can stand
in for :class:`MemoryStore` without the gateway changing:

* ``seen_before(key, ttl)``: set-if-absent; the replay cache.
* ``consume(key, limit, window)``: count one use in a fixed window; quotas.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ails.errors import ConfigError

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_QUOTA_RE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+?)s?\s*")


@dataclass(frozen=True)
class Quota:
    """``limit`` uses per ``window`` seconds."""

    limit: int
    window: float

    def __str__(self) -> str:
        for name in ("day", "hour", "minute"):
            if self.window == _UNITS[name]:
                return f"{self.limit}/{name}"
        return f"{self.limit}/{self.window:g}s"


def parse_quota(text: str) -> Quota:
    """``"15/day"``, ``"100/hour"``, ``"5/10min"``, ``"2/s"`` -> :class:`Quota`."""
    m = _QUOTA_RE.fullmatch(text.lower())
    unit = _UNITS.get(m.group(3)) if m else None
    if m is None or unit is None:
        raise ConfigError(f"a quota is COUNT/PERIOD, e.g. 15/day, 100/hour, 5/10min; got {text!r}")
    count = int(m.group(2) or 1)
    limit = int(m.group(1))
    if limit < 1 or count < 1:
        raise ConfigError(f"a quota needs a count and a period of at least 1: {text!r}")
    return Quota(limit=limit, window=float(count * unit))


def window_slot(now: float, window: float) -> tuple[int, float]:
    """The fixed window ``now`` falls in (windows aligned to the Unix epoch, so a
    ``/day`` quota resets at midnight UTC, the same on every replica), and the
    seconds left until it ends."""
    index = int(now // window)
    return index, (index + 1) * window - now


class StateStore(ABC):
    """Shared state of the gateway; every method is atomic for concurrent callers."""

    @abstractmethod
    async def seen_before(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was already recorded."""

    @abstractmethod
    async def consume(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        """Count one use of ``key`` in the current window of ``window`` seconds.

        Returns ``(allowed, remaining, reset_s)``: whether this use is within
        ``limit``, uses left after it, and seconds until the window resets. A
        refused use is not counted.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional: the memory store holds nothing
        """Release connections."""


class MemoryStore(StateStore):
    """One process's state, for a single gateway. Expired entries are pruned as
    new ones arrive, so memory follows the traffic of the last ``ttl``/window."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}  # key -> expiry
        self._seen_order: deque[tuple[float, str]] = deque()  # (expiry, key), oldest first
        self._counts: dict[str, tuple[float, int, int]] = {}  # key -> (window, index, uses)
        self._next_sweep = 0.0

    async def seen_before(self, key: str, ttl: float) -> bool:
        # No await inside: on one event loop this whole check-and-set is atomic.
        now = self._clock()
        self._prune(now)
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            return True
        self._seen[key] = now + ttl
        self._seen_order.append((now + ttl, key))
        return False

    async def consume(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        now = self._clock()
        index, reset_s = window_slot(now, window)
        if now >= self._next_sweep:
            self._sweep_counts(now)
        stored = self._counts.get(key)
        used = stored[2] if stored is not None and stored[:2] == (window, index) else 0
        if used >= limit:
            return False, 0, reset_s
        used += 1
        self._counts[key] = (window, index, used)
        return True, limit - used, reset_s

    def _prune(self, now: float) -> None:
        order = self._seen_order
        while order and order[0][0] <= now:
            expiry, key = order.popleft()
            if self._seen.get(key) == expiry:
                del self._seen[key]

    def _sweep_counts(self, now: float) -> None:
        # Counters of past windows are dead weight; drop them once a minute.
        self._next_sweep = now + 60.0
        stale = [k for k, (w, index, _) in self._counts.items() if index != int(now // w)]
        for k in stale:
            del self._counts[k]


__all__ = ["MemoryStore", "Quota", "StateStore", "parse_quota", "window_slot"]
