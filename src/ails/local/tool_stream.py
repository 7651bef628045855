"""Answers with tools: a constrained generation read back as a call, and ``auto``.

- :class:`CallStream` reads a generation made under :func:`tools.call_schema`.
  Its JSON is held back until the generation ends, then handed over as
  ``delta.tool_calls`` chunks (id, type and name, then the arguments) and
  ``finish_reason: "tool_calls"``; OpenAI streams a call in fragments too, and
  clients join them by ``index``. In the combined mode (``auto`` with a JSON
  ``response_format``) an answer that is not a call becomes the content.
- :class:`AutoStream` lets the model choose: it generates freely, with the
  tools in the prompt, and watches the first characters. Text is passed on as
  it comes; the start of a call (``{"name"``, maybe in a code fence or a
  ``<tool_call>`` tag) stops that generation and starts a constrained one,
  whose call always parses. The few tokens of the abandoned start are not
  counted in ``usage``. ``start_call`` is handed the free generation and
  stops it once the constrained one is first in line, so the request keeps
  its slot (local/slots.py).

Both pass a waiting generation's :class:`~ails.providers.base.QueueWait`
batches on: nothing of the answer has gone out before them (``auto`` holds
the first characters until it knows, so the wait of its constrained
generation is told too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ails.errors import ProtocolError
from ails.local.choices import queue_seconds
from ails.local.tools import ToolPlan, call_chunks, read_call, read_partial_call, starts_as_call
from ails.providers.base import ChunkStream, QueueWait
from ails.types import Chunk, ChunkChoice, Delta


class CallStream(ChunkStream):
    def __init__(self, inner: ChunkStream, plan: ToolPlan, *, combined: bool = False) -> None:
        self.inner = inner
        self.plan = plan
        self.combined = combined
        self._text: list[str] = []

    async def __anext__(self) -> list[Chunk]:
        while True:
            batch = await self.inner.__anext__()
            if type(batch) is QueueWait:
                return batch
            out: list[Chunk] = []
            for chunk in batch:
                if not chunk.choices:  # the usage
                    out.append(chunk)
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                if delta.content:
                    self._text.append(delta.content)
                    delta.content = None
                choice.logprobs = None  # OpenAI gives none for a call either
                if choice.finish_reason is not None:
                    out += self._finish(chunk, choice)
                elif delta.role is not None:
                    out.append(chunk)
            if out:
                return out

    def _finish(self, chunk: Chunk, choice: ChunkChoice) -> list[Chunk]:
        text = "".join(self._text)
        if choice.finish_reason == "length":  # cut: what there is, as OpenAI hands it over
            partial = read_partial_call(text)
            if partial is not None:
                return call_chunks(chunk, partial, index=choice.index, finish_reason="length")
            return [_content(chunk, choice, text)]
        call = read_call(text, self.plan)
        if call is not None:
            return call_chunks(chunk, call, index=choice.index, finish_reason="tool_calls")
        if self.combined:
            return [_content(chunk, choice, text)]
        raise ProtocolError(
            f"the constrained answer is not a call of {[t.name for t in self.plan.callable]}: "
            f"{text[:200]!r}",
            provider="local",
            code="invalid_tool_call",
        )

    @property
    def queue_seconds(self) -> float:
        return queue_seconds(self.inner)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _content(chunk: Chunk, choice: ChunkChoice, text: str) -> Chunk:
    choice.delta = Delta(content=text)
    return chunk


class AutoStream(ChunkStream):
    def __init__(
        self, inner: ChunkStream, start_call: Callable[[ChunkStream], Awaitable[ChunkStream]]
    ) -> None:
        self.inner = inner
        self._start_call = start_call
        self._held: list[Chunk] = []
        self._text = ""
        self._decided = False
        self._waited = 0.0  # by the abandoned generation, once a call starts

    async def __anext__(self) -> list[Chunk]:
        while not self._decided:
            try:
                batch = await self.inner.__anext__()
            except StopAsyncIteration:
                self._decided = True
                if self._held:
                    return self._release()
                raise
            if type(batch) is QueueWait:
                return batch
            self._held += batch
            ended = False
            for chunk in batch:
                if not chunk.choices:
                    ended = True
                for choice in chunk.choices:
                    if choice.delta.content:
                        self._text += choice.delta.content
                    if choice.finish_reason is not None:
                        ended = True
            decision = starts_as_call(self._text)
            if decision:
                self._decided = True
                self._held = []
                self._waited = queue_seconds(self.inner)
                free = self.inner
                try:
                    self.inner = await self._start_call(free)
                finally:
                    await free.aclose()  # done already, unless starting the call failed
            elif decision is False or ended:
                self._decided = True
                return self._release()
        return await self.inner.__anext__()

    def _release(self) -> list[Chunk]:
        held, self._held = self._held, []
        return held

    @property
    def queue_seconds(self) -> float:
        return self._waited + queue_seconds(self.inner)

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["AutoStream", "CallStream"]
