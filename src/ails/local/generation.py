"""The runtime's side of one generation: its thread, its callback, its slot.

``Server.handle_chat_completions`` blocks until the answer ends and calls our
callback from that thread, with the GIL, once per chunk; the callback's return
value is the only brake: ``True`` ends the loop and the runtime cancels the task
and frees its slot (measured: the next request on a one-slot model started at
once, docs/local-model.md). So:

- each generation gets a dedicated daemon thread, never the loop's default
  executor, which a few long generations would otherwise starve;
- the callback decodes the chunk (msgspec, straight into :class:`Chunk`) on that
  thread, then hands it to the event loop with ``call_soon_threadsafe``;
- stopping is a flag the callback reads, and generation stops at the next token.

The state the thread touches lives in :class:`Generation`, apart from the
:class:`~ails.local.bridge.LocalStream` the consumer holds, so a stream
dropped without ``aclose`` can be collected and its finalizer can stop the
thread. A generation enters the runtime only with a slot of the model's
:class:`~ails.local.slots.SlotGate`, and gives it back when its thread leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Any

import msgspec

from ails.errors import BadRequest, ProtocolError, ProviderError, error_for_status
from ails.local.slots import SlotGate
from ails.local.speed import speed_of
from ails.types import Chunk, text_chunk

_decode = msgspec.json.Decoder(Chunk).decode
END = object()
#: The generation got its slot (posted by whoever released it).
GRANTED = object()
#: Generations whose thread is still in the runtime (touched only with the GIL held).
ACTIVE: set[Generation] = set()
_exiting = False


class Place:
    """The generation's place changed while it waits for a slot."""

    __slots__ = ("ahead",)

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead


class Generation:
    """What the runtime thread shares with the loop: a queue, a waiter, a stop flag."""

    __slots__ = (
        "body",
        "done",
        "first",
        "gate",
        "items",
        "last",
        "loop",
        "model",
        "server",
        "stop",
        "text",
        "thread",
        "tokens",
        "waiter",
    )

    def __init__(
        self,
        server: Any,
        body: bytes,
        loop: asyncio.AbstractEventLoop,
        model: str | None,
        gate: SlotGate | None = None,
        text: bool = False,
    ) -> None:
        self.server = server
        self.gate = gate
        self.body = body
        #: A legacy text completion (the runtime's /v1/completions), not a chat.
        self.text = text
        self.loop = loop
        #: The name the caller asked for, put on every chunk (the runtime says its alias).
        self.model = model
        #: Chunks, errors and the end marker, in arrival order (loop thread only).
        self.items: deque[object] = deque()
        self.waiter: asyncio.Future[object] | None = None
        #: Resolved when the thread has left the runtime (its slot is free again).
        self.done: asyncio.Future[None] = loop.create_future()
        #: Read by the runtime thread at every token; a bool store is atomic.
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="ails-local-generate", daemon=True)
        #: The decode, for its speed (local/speed.py): when the first and the
        #: last chunk came (perf_counter), and the tokens the usage reported.
        self.first = self.last = 0.0
        self.tokens = 0

    # -- the slot (any thread) ---------------------------------------------------

    def take_slot(self) -> bool:
        """Start generating now; decline when stopped while waiting (the slot
        then goes to the next waiter)."""
        if self.stop or _exiting:
            self._post(END)
            return False
        self._post(GRANTED)  # before the thread can post its first chunk
        ACTIVE.add(self)
        self.thread.start()
        return True

    def moved(self, ahead: int) -> None:
        self._post(Place(ahead))

    # -- the runtime thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.text:
                self.server.handle_completions(self.body, self._on_data)
            else:
                self.server.handle_chat_completions(self.body, self._on_data)
        except BaseException as exc:  # a runtime failure must reach the consumer
            self._post(exc)
        finally:
            ACTIVE.discard(self)
            if self.gate is not None:
                speed_of(self.gate).add(self.tokens - 1, self.last - self.first)
                self.gate.release()
            self._post(END)

    def _on_data(self, data: bytes) -> bool:
        """The runtime's callback: return True to stop generating."""
        if self.stop:
            return True
        try:
            chunk = text_chunk(data) if self.text else _decode(data)
        except msgspec.DecodeError as exc:
            item: object = ProtocolError(
                f"the local runtime sent a chunk that is not chunk JSON: {exc}"
            )
        else:
            if self.model is not None:
                chunk.model = self.model
            item = chunk
            self.last = time.perf_counter()
            if not self.first:
                self.first = self.last
            if chunk.usage is not None:
                self.tokens = chunk.usage.completion_tokens
        try:
            self.loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop is closed: nobody will read this answer
            self.stop = True
            return True
        return False

    def _post(self, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has no reader left
            self.loop.call_soon_threadsafe(self._deliver, item)

    # -- the loop thread ---------------------------------------------------------

    def _deliver(self, item: object) -> None:
        self.items.append(item)
        if item is END and not self.done.done():
            self.done.set_result(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def stop_all(timeout: float = 10.0) -> None:
    """At interpreter exit: stop every generation and wait for the threads to leave
    the runtime. A daemon thread that calls back into Python after finalization
    began is killed inside the runtime's C++ frames, which aborts the process
    ("FATAL: exception not rethrown"); a stopped one leaves within a token.
    Generations still waiting for a slot never enter the runtime."""
    global _exiting
    _exiting = True
    generations = list(ACTIVE)
    for gen in generations:
        gen.stop = True
    deadline = time.monotonic() + timeout
    for gen in generations:
        gen.thread.join(max(0.0, deadline - time.monotonic()))


def runtime_error(err: Any, *, provider: str, param: str = "messages") -> ProviderError:
    """The runtime's in-band ``{"error": {"code": 400, "type": ..., "message": ...}}``."""
    if isinstance(err, dict):
        message = str(err.get("message") or "the local runtime reported an error")
        status = err.get("code") if isinstance(err.get("code"), int) else None
        kind = err.get("type") if isinstance(err.get("type"), str) else None
    else:
        message, status, kind = str(err), None, None
    if kind == "exceed_context_size_error":
        # OpenAI's code, param and wording for the same fault, which clients
        # (and agents deciding to compact their history) look for.
        given, limit = err.get("n_prompt_tokens"), err.get("n_ctx")
        if isinstance(given, int) and isinstance(limit, int):
            message = (
                f"This model's maximum context length is {limit} tokens. However, your "
                f"{param} resulted in {given} tokens. Please reduce the length of the {param}"
            )
        return BadRequest(
            f"{message} (the local provider's context is set by n_ctx or AILS_LOCAL_CTX)",
            status=400,
            provider=provider,
            body=err,
            code="context_length_exceeded",
            param=param,
        )
    if status is not None and 400 <= status < 600:
        return error_for_status(status, message, provider=provider, body=err, code=kind)
    return ProviderError(message, provider=provider, body=err, code=kind)


__all__ = ["ACTIVE", "END", "GRANTED", "Generation", "Place", "runtime_error", "stop_all"]
