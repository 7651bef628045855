"""Shared state in Redis, so that several ``ails serve`` replicas act as one.

Imported only when ``--redis`` is given: ``import ails`` and a gateway without
Redis never load redis-py. Every operation is one round trip, atomic in Redis:

* the replay cache: ``SET key 1 NX PX ttl`` (in a script, below);
* counters (quotas, requests and tokens per minute): a Lua script reads every
  counter of one check, charges them all or none (``INCRBY``) and gives a new
  key its expiry, so two replicas racing for the last unit cannot both win;
* tokens actually used (a batch of counters): a Lua script, ``INCRBY`` and the
  expiry of each;
* the response cache: ``GET`` / ``SET key value PX ttl``.

Every write (those above, and ``SET``) is a Lua script that carries its
deadline, the end of its timeout on Redis's own clock (the offset between the
clocks measured with ``TIME`` once a minute): one that ran later, after a stall,
does nothing, so a request that got 503 is never charged or recorded.

Keys are ``PREFIX + name``. A counter's key carries its window length and the
window's index (``ails:rpm:KEYID:60:29266101``), so each window is a fresh key
that expires a little after the window ends. Nothing is written without an
expiry.

Failures: short socket timeouts for connecting and for every command, and no
retries, so a request never waits long on Redis. After a failure a circuit
breaker answers :class:`StateUnavailable` at once for ``breaker_s`` seconds
(a dead Redis must not add a timeout to every request); then one call probes
again while the others still fail fast. The connection pool reconnects by
itself when Redis is back, so recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ails.server.limits import window_slot
from ails.server.state import Count, Counter, StateStore, StateUnavailable

log = logging.getLogger("ails.server")

_T = TypeVar("_T")

#: A counter outlives its window by this much: replicas' clocks differ a little,
#: and a key must not vanish while a replica whose clock lags still counts in it.
SLACK_MS = 5000
#: A successful call this recent makes ``/health`` answer "up" without a PING.
_HEALTH_FRESH_S = 1.0

# Every write carries its deadline in ARGV[1], milliseconds on the Redis
# server's clock: a command that runs later (Redis was stalled, the client
# gave up and answered 503) does nothing and says so with LATE.
_LATE = -1
_DEADLINE = """
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[1]) then
  return -1
end
"""

# KEYS: the counters; ARGV: the deadline, then limit, cost, ttl in ms for each
# counter, in order. Returns {allowed (0/1), used_1, ..., used_n}: used after
# the charge when allowed, as found when refused.
_CONSUME = (
    _DEADLINE
    + """
local used = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  local limit = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  if n >= limit or n + cost > limit then allowed = 0 end
  used[i] = n
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[3 * i])
    if cost > 0 then
      used[i] = redis.call('INCRBY', key, cost)
      if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3 * i + 1]) end
    end
  end
end
table.insert(used, 1, allowed)
return used
"""
)

# KEYS: the counters; ARGV: the deadline, ttl in ms, then the amount of each
# counter. Returns the units each counter has used now.
_ADD = (
    _DEADLINE
    + """
local used = {}
for i, key in ipairs(KEYS) do
  used[i] = redis.call('INCRBY', key, ARGV[i + 2])
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2]) end
end
return used
"""
)

# KEYS: one key; ARGV: the deadline, ttl in ms, NX (1/0), the value.
# Returns 1 when set, 0 when NX found the key there.
_SET = (
    _DEADLINE
    + """
local done
if ARGV[3] == '1' then
  done = redis.call('SET', KEYS[1], ARGV[4], 'NX', 'PX', ARGV[2])
else
  done = redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[2])
end
if done then return 1 end
return 0
"""
)

#: How often the offset between this machine's clock and Redis's is measured.
CLOCK_CHECK_S = 60.0


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore(StateStore):
    """:class:`StateStore` on one Redis server (standalone or a Sentinel-managed
    primary; not Redis Cluster: a check's counters must live on one node)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ails:",
        timeout: float = 0.25,
        breaker_s: float = 1.0,
        where: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix
        self.where = where or url  # for the log: the caller passes the URL without password
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One attempt only: a retry would double the wait on a dead Redis,
            # and a stale pooled connection is replaced by the pool anyway.
            retry=Retry(NoBackoff(), 0),
        )
        self._consume = self._redis.register_script(_CONSUME)
        self._add = self._redis.register_script(_ADD)
        self._set = self._redis.register_script(_SET)
        self._timeout = timeout
        #: Redis's clock minus ours (ms), less the measurement's uncertainty,
        #: so a deadline errs early; None until measured.
        self._offset_ms: float | None = None
        self._offset_at = -math.inf
        self._breaker_s = breaker_s
        self._clock = clock
        self._down: str | None = None  # why, while Redis is unreachable
        self._retry_at = 0.0  # monotonic time of the next probe while down
        self._last_ok = -math.inf
        self._on_call: Callable[[float, bool], None] | None = None

    def watch(self, on_call: Callable[[float, bool], None]) -> None:
        self._on_call = on_call

    async def _run(self, call: Callable[[], Awaitable[_T]]) -> _T:
        now = time.monotonic()
        if self._down is not None:
            if now < self._retry_at:
                raise StateUnavailable(self._down)
            # This call probes; concurrent ones keep failing fast meanwhile.
            self._retry_at = now + self._breaker_s
        try:
            result = await call()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if self._on_call is not None:
                self._on_call(time.monotonic() - now, False)
            self._trip(exc)
            raise StateUnavailable(self._down or "Redis failed") from None
        if self._on_call is not None:
            self._on_call(time.monotonic() - now, True)
        self._last_ok = now
        if self._down is not None:
            self._down = None
            log.warning("shared state: Redis at %s is reachable again", self.where)
        return result

    def _trip(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if self._down is None:
            log.error("shared state: Redis at %s is unreachable (%s)", self.where, reason)
        self._down = reason
        self._retry_at = time.monotonic() + self._breaker_s

    async def _deadline(self) -> int:
        """The moment (ms on Redis's clock) after which a write sent now must
        not happen: when this call's timeout ends. The clocks' offset is
        measured with ``TIME`` (once a minute), so skew between them is allowed for."""
        now = time.monotonic()
        if self._offset_ms is None or now - self._offset_at > CLOCK_CHECK_S:
            seconds, micros = await self._run(self._redis.time)
            back = time.time()
            server_ms = seconds * 1000 + micros / 1000
            # Redis read its clock somewhere in [sent, back]: assume the worst.
            self._offset_ms = server_ms - back * 1000
            self._offset_at = now
        return int((time.time() + self._timeout) * 1000 + self._offset_ms)

    async def _write(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        deadline = await self._deadline()
        reply = await self._run(lambda: script(keys=keys, args=[deadline, *args]))
        if reply == _LATE:
            # Ran after its caller gave up: it did nothing, and this one fails too.
            self._trip(TimeoutError("Redis ran a write after its deadline; it did nothing"))
            raise StateUnavailable(self._down or "Redis is late")
        return reply

    async def seen_before(self, key: str, ttl: float) -> bool:
        name = self.prefix + key
        created = await self._write(self._set, [name], [_ms(ttl), 1, b"1"])
        return int(created) == 0  # NX: 0 when the key was already there

    async def consume_all(self, counters: Sequence[Counter]) -> tuple[bool, list[Count]]:
        if not counters:
            return True, []
        now = self._clock()
        keys: list[str] = []
        args: list[int] = []
        resets: list[float] = []
        for c in counters:
            index, reset = window_slot(now, c.window)
            keys.append(f"{self.prefix}{c.key}:{c.window:g}:{index}")
            args += [c.limit, c.cost, _ms(reset) + SLACK_MS]
            resets.append(reset)
        reply: list[Any] = await self._write(self._consume, keys, args)
        used = [int(u) for u in reply[1:]]
        counts = [
            Count(u, max(0, c.limit - u), r) for c, u, r in zip(counters, used, resets, strict=True)
        ]
        return bool(reply[0]), counts

    async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
        if not amounts:
            return {}
        index, reset = window_slot(self._clock(), window)
        names = [f"{self.prefix}{key}:{window:g}:{index}" for key in amounts]
        args = [_ms(reset) + SLACK_MS, *amounts.values()]
        reply: list[Any] = await self._write(self._add, names, args)
        return {key: int(used) for key, used in zip(amounts, reply, strict=True)}

    async def cache_get(self, key: str) -> bytes | None:
        name = self.prefix + key
        value = await self._run(lambda: self._redis.get(name))
        # decode_responses is off: a value is the bytes that were stored.
        return value if isinstance(value, bytes) else None

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        name = self.prefix + key
        await self._write(self._set, [name], [_ms(ttl), 0, value])

    async def health(self) -> str:
        """Cheap: the breaker's state, or a PING at most once a second."""
        now = time.monotonic()
        if self._down is not None and now < self._retry_at:
            return "down"
        if now - self._last_ok < _HEALTH_FRESH_S:
            return "up"
        try:
            await self._run(self._redis.ping)
        except StateUnavailable:
            return "down"
        return "up"

    async def aclose(self) -> None:
        await self._redis.aclose()


__all__ = ["SLACK_MS", "RedisStore"]
