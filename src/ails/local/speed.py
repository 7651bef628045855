"""How fast the embedded model decodes: the gateway's
``ails_local_tokens_per_second`` (docs/metrics.md).

A generation's decode is timed on its runtime thread, from its first chunk
(the first token, once the prompt is read) to its last; the tokens are those
its usage reports, less the first. The speed is the sum of the tokens over
the sum of the seconds of the last :data:`WINDOW` generations that made at
least two tokens: the tokens per second *one* answer sees, as llama.cpp's own
``predicted_per_second``, whatever the number of slots decoding at once
(``rate()`` of the completion tokens counts them all together).

Kept per loaded model, by its :class:`~ails.local.slots.SlotGate` (one per
model), beside the gate rather than in it.
"""

from __future__ import annotations

import threading
from collections import deque
from weakref import WeakKeyDictionary

from ails.local.slots import SlotGate

#: Generations the speed is taken over.
WINDOW = 16


class DecodeSpeed:
    """The decode of the last :data:`WINDOW` generations of one model."""

    def __init__(self) -> None:
        # Appended by runtime threads, read by a scrape: a deque's append and
        # copy are atomic under the GIL, so no lock.
        self._recent: deque[tuple[int, float]] = deque(maxlen=WINDOW)

    def add(self, tokens: int, seconds: float) -> None:
        """A generation made ``tokens`` after its first in ``seconds``."""
        if tokens > 0 and seconds > 0:
            self._recent.append((tokens, seconds))

    def tokens_per_second(self) -> float:
        """0 until a generation made two tokens."""
        recent = list(self._recent)
        seconds = sum(s for _, s in recent)
        return sum(t for t, _ in recent) / seconds if seconds else 0.0


_speeds: WeakKeyDictionary[SlotGate, DecodeSpeed] = WeakKeyDictionary()
_lock = threading.Lock()


def speed_of(gate: SlotGate) -> DecodeSpeed:
    """The decode speed of the model behind ``gate``."""
    with _lock:  # runtime threads and the loop ask at once
        speed = _speeds.get(gate)
        if speed is None:
            speed = _speeds[gate] = DecodeSpeed()
        return speed


__all__ = ["WINDOW", "DecodeSpeed", "speed_of"]
