"""The gateway's shared state: the store interface and the in-memory store.

The state lives behind :class:`StateStore`, a deliberately narrow async interface, so that a
Redis store shared by several replicas (``ails.server.redis_store``) stands in
for :class:`MemoryStore` without the gateway changing:

* ``seen_before(key, ttl)``: set-if-absent; the replay cache.
* ``consume_all(counters)``: charge fixed-window counters, all or none;
  quotas and rate limits (``consume`` is the one-counter case).
* ``add(amounts, window)``: charge counters unconditionally; tokens actually
  used, known only once the answer is done (written in batches).
* ``cache_get`` / ``cache_set``: the response cache.

Every check-and-charge is atomic for concurrent callers; every entry expires.
A shared store that cannot be reached raises :class:`StateUnavailable`, and the
gateway's failure policy (``ails.server.policy``) decides what that means.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ails.server.limits import window_slot


class StateUnavailable(Exception):
    """The shared store cannot be reached now (down, too slow, refusing)."""


@dataclass(frozen=True)
class Counter:
    """A fixed-window counter to check, and to charge ``cost`` when there is room.

    There is room when ``used < limit`` and ``used + cost <= limit``: with
    ``cost=0`` the counter is only checked (a token budget that must not be
    spent yet; the tokens are added once known, see :meth:`StateStore.add`).
    """

    key: str
    limit: int
    window: float
    cost: int = 1


@dataclass(frozen=True)
class Count:
    """A counter after a check: units used in the current window (after this
    use when it was allowed), what is left, and seconds until the window ends."""

    used: int
    remaining: int
    reset_s: float


class StateStore(ABC):
    """Shared state of the gateway; every method is atomic for concurrent callers."""

    @abstractmethod
    async def seen_before(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was already recorded."""

    @abstractmethod
    async def consume_all(self, counters: Sequence[Counter]) -> tuple[bool, list[Count]]:
        """Charge every counter its cost if every one has room, else none.

        Windows are aligned to the Unix epoch (:func:`window_slot`). Returns
        whether the use was allowed and each counter's :class:`Count`, in order.
        """

    async def consume(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        """Count one use of ``key`` in the current window of ``window`` seconds.

        Returns ``(allowed, remaining, reset_s)``: whether this use is within
        ``limit``, uses left after it, and seconds until the window resets. A
        refused use is not counted.
        """
        allowed, (count,) = await self.consume_all([Counter(key, limit, window)])
        return allowed, count.remaining, count.reset_s

    @abstractmethod
    async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
        """Charge each counter its amount in the current window, whatever its
        limit; return the units each has used in that window now."""

    @abstractmethod
    async def cache_get(self, key: str) -> bytes | None:
        """The cached value of ``key``, or None."""

    @abstractmethod
    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (a store may drop it sooner)."""

    async def health(self) -> str | None:
        """``"up"`` or ``"down"`` for a store that can be unreachable; None otherwise."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional: the memory store holds nothing
        """Release connections."""

    def watch(self, on_call: Callable[[float, bool], None]) -> None:  # noqa: B027
        """Report each round trip to a remote store: ``on_call(seconds, ok)``
        (the metrics). A store in this process's memory has none to report."""


class MemoryStore(StateStore):
    """One process's state, for a single gateway. Expired entries are pruned as
    new ones arrive, so memory follows the traffic of the last ``ttl``/window;
    the response cache is bounded by entries and bytes (least recently used
    entries go first)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        cache_entries: int = 1024,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}  # key -> expiry
        self._seen_order: deque[tuple[float, str]] = deque()  # (expiry, key), oldest first
        self._counts: dict[str, tuple[int, int]] = {}  # "key:window" -> (window index, used)
        self._windows: dict[str, float] = {}  # "key:window" -> window, for the sweep
        self._next_sweep = 0.0
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value)
        self._cache_size = 0
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes

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

    async def consume_all(self, counters: Sequence[Counter]) -> tuple[bool, list[Count]]:
        # No await inside either: the check and the charge are one step.
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        slots = [window_slot(now, c.window) for c in counters]
        used = [self._used(c, index) for c, (index, _) in zip(counters, slots, strict=True)]
        allowed = all(
            u < c.limit and u + c.cost <= c.limit for c, u in zip(counters, used, strict=True)
        )
        if allowed:
            for i, (c, (index, _)) in enumerate(zip(counters, slots, strict=True)):
                if c.cost:
                    used[i] += c.cost
                    self._charge(c.key, c.window, index, used[i])
        return allowed, [
            Count(u, max(0, c.limit - u), reset)
            for c, u, (_, reset) in zip(counters, used, slots, strict=True)
        ]

    async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
        index, _ = window_slot(self._clock(), window)
        out = {}
        for key, amount in amounts.items():
            out[key] = self._used(Counter(key, 0, window), index) + amount
            self._charge(key, window, index, out[key])
        return out

    async def cache_get(self, key: str) -> bytes | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._cache_drop(key)
            return None
        self._cache.move_to_end(key)
        return entry[1]

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self._cache_drop(key)
        if len(value) > self._cache_bytes:
            return
        self._cache[key] = (self._clock() + ttl, value)
        self._cache_size += len(value)
        while len(self._cache) > self._cache_entries or self._cache_size > self._cache_bytes:
            self._cache_drop(next(iter(self._cache)))  # the least recently used

    def _used(self, counter: Counter, index: int) -> int:
        stored = self._counts.get(f"{counter.key}:{counter.window:g}")
        return stored[1] if stored is not None and stored[0] == index else 0

    def _charge(self, key: str, window: float, index: int, used: int) -> None:
        slot = f"{key}:{window:g}"
        self._counts[slot] = (index, used)
        self._windows[slot] = window

    def _cache_drop(self, key: str) -> None:
        entry = self._cache.pop(key, None)
        if entry is not None:
            self._cache_size -= len(entry[1])

    def _prune(self, now: float) -> None:
        order = self._seen_order
        while order and order[0][0] <= now:
            expiry, key = order.popleft()
            if self._seen.get(key) == expiry:
                del self._seen[key]

    def _sweep(self, now: float) -> None:
        # Counters of past windows and expired answers are dead weight; drop them
        # once a minute.
        self._next_sweep = now + 60.0
        stale = [
            k for k, (index, _) in self._counts.items() if index != int(now // self._windows[k])
        ]
        for k in stale:
            del self._counts[k]
            del self._windows[k]
        for k in [k for k, (expiry, _) in self._cache.items() if expiry <= now]:
            self._cache_drop(k)


__all__ = ["Count", "Counter", "MemoryStore", "StateStore", "StateUnavailable"]
