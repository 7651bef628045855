"""The embedded model's slots and the queue in front of them.

The runtime decodes ``parallel`` requests at once and would queue the rest
itself, out of sight: a request waiting there cannot learn its place, be
withdrawn, or be refused when the line is too long. So ails keeps the line in
Python: a generation enters the runtime only with a slot, taken here, and
gives it back when its thread leaves the runtime. Waiters are served first
come, first served, and each is told how many requests are ahead of it
(``ahead``: those being answered plus those before it in the line) whenever
that changes.

A request may need a second generation: ``tool_choice: "auto"`` stops its
free generation when the model starts a call and makes the call with a
constrained one (local/tool_stream.py). That follow-up enters with
``first=True``: it goes to the head of the line, before every request that
waits, and is never refused for ``max_queue``, so the slot its first
generation gives back comes back to it. It enters before that generation is
stopped, so no one in the line can take the slot in between; only when the
first generation had already ended by itself (its slot gone to the next in
line) does the follow-up wait for another. A stream that started is thus
neither refused midway (a 503 after its first bytes) nor sent to the back.

One :class:`SlotGate` per loaded model, shared by every event loop of the
process (the sync client's and a gateway's): its state is guarded by a
thread lock, and a waiter hears about its turn through its own
:class:`Waiter` methods, which post to its loop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from ails.errors import UpstreamUnavailable

#: Requests that may wait for a slot unless told otherwise (``--max-queue``).
DEFAULT_MAX_QUEUE = 64
#: Bytes the chat template may add around a prompt's JSON (role markers, the
#: default system prompt, the tool instructions): generous on purpose.
TEMPLATE_MARGIN_BYTES = 1024


@dataclass(frozen=True)
class QueueSnapshot:
    """The embedded model's load at one moment: slots decoding, slots in all,
    requests waiting for one."""

    busy: int
    slots: int
    queued: int


class Waiter(Protocol):
    """What the gate needs of a generation that waits for a slot."""

    def take_slot(self) -> bool:
        """The slot is yours: start now (True), or decline it (False: stopped
        while waiting), and the gate offers it to the next waiter."""
        ...

    def moved(self, ahead: int) -> None:
        """Your place changed: ``ahead`` requests (answered or waiting) are before you."""
        ...


class QueueFull(UpstreamUnavailable):
    """Every slot is busy and the line is at its limit: try again shortly.

    Not retried on the same backend by the router (another try a second later
    is the client's call, ``retry-after``); a fallback backend may still take it.
    """

    retryable = False


def queue_full(provider: str, max_queue: int) -> QueueFull:
    return QueueFull(
        f"the embedded model is busy and its queue is full ({max_queue} waiting, the limit "
        "set by --max-queue or the local provider's max_queue); try again shortly",
        status=503,
        provider=provider,
        code="queue_full",
        retry_after=1.0,
    )


class SlotGate:
    """``slots`` places in the runtime, and the line of generations waiting for one."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._busy = 0
        self._line: deque[Waiter] = deque()
        #: The line's first ``_firsts`` waiters are follow-ups (``enter(first=True)``).
        self._firsts = 0
        self._lock = threading.Lock()

    def snapshot(self) -> QueueSnapshot:
        with self._lock:
            # Follow-ups count as queued: they wait, though never refused for it.
            return QueueSnapshot(busy=self._busy, slots=self.slots, queued=len(self._line))

    def has_free_slot(self) -> bool:
        return self._busy < self.slots

    def enter(
        self, waiter: Waiter, *, max_queue: int, provider: str, first: bool = False
    ) -> int | None:
        """Take a free slot (``None``: the caller starts at once, and calls
        :meth:`release` when done) or join the line (the requests ahead;
        ``waiter.take_slot()`` is called at its turn). Raises
        :class:`QueueFull` when ``max_queue`` requests already wait.

        ``first``: the follow-up generation of a request already answered,
        placed after the other follow-ups only, and never refused (the
        module's docstring)."""
        with self._lock:
            if self._busy < self.slots and (first or not self._line):
                self._busy += 1
                return None
            if not first:
                if len(self._line) - self._firsts >= max_queue:
                    raise queue_full(provider, max_queue)
                self._line.append(waiter)
                return len(self._line) - 1 + self._busy
            index = self._firsts
            self._line.insert(index, waiter)
            self._firsts += 1
            behind = list(self._line)[index + 1 :]
            start = index + 1 + self._busy
        for ahead, other in enumerate(behind, start=start):
            other.moved(ahead)
        return index + self._busy

    def withdraw(self, waiter: Waiter) -> bool:
        """Leave the line (the request went away while waiting); False if it
        was not in it (it already has a slot)."""
        with self._lock:
            try:
                index = self._line.index(waiter)
            except ValueError:
                return False
            del self._line[index]
            if index < self._firsts:
                self._firsts -= 1
            behind = list(self._line)[index:]
            start = index + self._busy
        for ahead, other in enumerate(behind, start=start):
            other.moved(ahead)
        return True

    def release(self) -> None:
        """A generation left the runtime: its slot goes to the first waiter
        that still wants it; everyone behind moves up."""
        while True:
            with self._lock:
                if not self._line:
                    self._busy = max(0, self._busy - 1)
                    return
                first = self._line.popleft()
                self._firsts = max(0, self._firsts - 1)
                behind = list(self._line)
                busy = self._busy
            for ahead, other in enumerate(behind, start=busy):
                other.moved(ahead)
            if first.take_slot():
                return  # the slot passed on: busy stays the same


def certainly_fits(body: bytes, n_ctx: int) -> bool:
    """True when a prompt cannot be longer than the context, known without a
    tokenizer: for a prompt local/fit.py cannot count (a model whose tokenizer
    ails does not rebuild; the runtime tokenises only once a request has a slot).

    Every token of this byte-level BPE model stands for at least one byte of
    the rendered prompt, and the request's JSON holds every byte of its text
    (escapes only add), so ``len(body)`` plus the template's additions bounds
    the prompt's tokens from above. A request that may not fit waits for its
    slot without announcing the wait, so that a prompt over the context is
    still a 400 before any byte of the answer.
    """
    return len(body) + TEMPLATE_MARGIN_BYTES <= n_ctx


__all__ = [
    "DEFAULT_MAX_QUEUE",
    "QueueFull",
    "QueueSnapshot",
    "SlotGate",
    "Waiter",
    "certainly_fits",
    "queue_full",
]
