"""The upstream call's deadline (providers/_deadline.py): a short limit has its
own timer, a long one shares its second's; either way a timeout is told from a
cancellation that came from elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from ails.providers import _deadline
from ails.providers._deadline import Deadline, within


async def _sleep_within(limit: float) -> str:
    await within(asyncio.sleep(30), limit)
    return "finished"


def test_a_short_limit_times_out() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await _sleep_within(0.05)
        assert loop.time() - start < 5

    asyncio.run(main())


def test_long_limits_share_their_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # Below the threshold here, so a test need not wait five seconds.
    monkeypatch.setattr(_deadline, "SHARED_ABOVE", 0.0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(
            *(_sleep_within(0.2) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, asyncio.TimeoutError) for r in results), results
        assert loop.time() - start < 5  # at most a second late, not 30 s
        # Each one's second is gone once it fired: nothing is kept.
        assert not _deadline._seconds[1]

    asyncio.run(main())


def test_a_cancelled_deadline_never_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deadline, "SHARED_ABOVE", 0.0)

    async def main() -> None:
        shared = Deadline(0.1)  # a shared second
        own = Deadline(10.0)
        shared.cancel()
        own.cancel()
        assert all(not due for due in _deadline._seconds[1].values())
        await asyncio.sleep(1.3)  # past the shared second: the task runs on
        assert not shared.fired and not shared.expired()

    asyncio.run(main())


@pytest.mark.parametrize("limit", [0.3, 30.0])
def test_a_cancellation_from_elsewhere_is_not_a_timeout(limit: float) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(_sleep_within(limit))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_no_limit_waits() -> None:
    async def main() -> None:
        assert await within(asyncio.sleep(0.01, "done"), None) == "done"

    asyncio.run(main())
