"""Quota arithmetic, pure: ``parse_quota`` and ``window_slot`` (the fixed
window a moment falls in). The counters live in a
:class:`~ails.server.state.StateStore`."""

from __future__ import annotations

import re
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


__all__ = ["Quota", "parse_quota", "window_slot"]
