"""Deadlines on an upstream call: cancel the waiting task when its time is up,
and tell that cancellation from anyone else's.

What ``asyncio.timeout`` does, without its context manager, state machine and
extra coroutines: paid on every upstream request. A long limit (over
:data:`SHARED_ABOVE` seconds, such as the default 600 s total) shares one
timer with every other deadline that ends in the same whole second, rounded
up as aiohttp rounds its own long timeouts: a timer handle made and cancelled
per request cost more than the rest of the deadline together. A short limit
keeps its own exact timer.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

#: Limits above this many seconds end on a whole second of the loop's clock,
#: at most a second late, and share that second's timer.
SHARED_ABOVE = 5.0
#: ``Task.cancelling``/``uncancel`` (Python 3.11+) tell whose cancellation it was.
_COUNTS = sys.version_info >= (3, 11)


class Deadline:
    """Cancels the current task after ``limit`` seconds, unless :meth:`cancel`
    is called first. On a :class:`asyncio.CancelledError`, :meth:`expired`
    says whether the cancellation was this deadline's (and takes it back;
    before Python 3.11 a task cannot tell whose it was: taken as this one's)."""

    __slots__ = ("_cancelling", "_due", "_handle", "fired", "task")

    def __init__(self, limit: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.fired = False
        self._cancelling = task.cancelling() if _COUNTS else 0  # type: ignore[attr-defined,unused-ignore]
        loop = task.get_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._due: dict[Deadline, None] | None = None
        if limit > SHARED_ABOVE:
            second = math.ceil(loop.time() + limit)
            owner, seconds = _seconds
            # The usual case inline (this loop's second has its timer already);
            # _shared_second makes what is missing.
            due = seconds.get(second) if owner is loop else None
            if due is None:
                due = _shared_second(loop, second)
            due[self] = None
            self._due = due
        else:
            self._handle = loop.call_later(limit, self.fire)

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()

    def expired(self) -> bool:
        """On a cancellation: whether it was this deadline's and no one else
        asked to cancel the task meanwhile (then it is a timeout)."""
        if not self.fired:
            return False
        if not _COUNTS:  # pragma: no cover - Python 3.10
            return True
        return bool(self.task.uncancel() <= self._cancelling)  # type: ignore[attr-defined,unused-ignore]

    def cancel(self) -> None:
        if self._due is not None:
            self._due.pop(self, None)
        elif self._handle is not None:
            self._handle.cancel()


#: The seconds of one loop (the one in use; another loop gets its own, and
#: the timers of the old one still hold theirs): second -> the deadlines that
#: end then, in one dict each.
_seconds: tuple[asyncio.AbstractEventLoop | None, dict[int, dict[Deadline, None]]] = (None, {})


def _shared_second(loop: asyncio.AbstractEventLoop, second: int) -> dict[Deadline, None]:
    global _seconds
    owner, seconds = _seconds
    if owner is not loop:
        seconds = {}
        _seconds = (loop, seconds)
    due = seconds.get(second)
    if due is None:
        due = seconds[second] = {}
        loop.call_at(second, _fire_second, seconds, second)
    return due


def _fire_second(seconds: dict[int, dict[Deadline, None]], second: int) -> None:
    for deadline in seconds.pop(second, {}):
        deadline.fire()


async def within(aw: Awaitable[T], limit: float | None) -> T:
    """``aw`` within ``limit`` seconds, or :class:`asyncio.TimeoutError`."""
    if limit is None:
        return await aw
    deadline = Deadline(limit)
    try:
        return await aw
    except asyncio.CancelledError:
        if deadline.expired():
            raise asyncio.TimeoutError from None
        raise
    finally:
        deadline.cancel()


def min_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


__all__ = ["SHARED_ABOVE", "Deadline", "min_opt", "within"]
