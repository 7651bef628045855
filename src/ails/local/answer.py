"""One answer of the embedded model, from a checked :class:`~ails.local.params.Plan`.

The common request (one choice, no tools) is one generation, a
:class:`~ails.local.bridge.LocalStream`, with nothing around it: what ails adds
per token stays what bridge.py measures. Otherwise each choice is its own
generation (or two, for ``tool_choice: "auto"`` when the model starts a call),
put together by :mod:`ails.local.choices` and :mod:`ails.local.tool_stream`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ails.local.bridge import LocalStream
from ails.local.choices import FoldUsage, MapChunks, MergedChoices, empty_top_logprobs
from ails.local.fit import check_fit, count_chat
from ails.local.params import Plan
from ails.local.runtime import Runtime
from ails.local.tool_stream import AutoStream, CallStream
from ails.local.tools import call_schema, json_schema_format
from ails.providers.base import ChunkStream, Timeouts


async def open_answer(
    runtime: Runtime,
    plan: Plan,
    *,
    model: str,
    provider: str,
    timeouts: Timeouts,
    max_queue: int,
    announce: bool = True,
) -> ChunkStream:
    """Start every generation the plan needs; return once each has sent its first
    chunk, so that a request the runtime refuses fails here, before the answer.

    The prompt is counted first (local/fit.py), tools included, as the
    template renders them for every kind of request (a JSON ``response_format``
    or a call's schema constrains the sampler, not the prompt): one clearly
    over the context is refused here, before it queues. When it clearly fits,
    an answer that must wait for a slot, with ``announce``, returns as soon as
    it is in the line, its first batches saying where it stands
    (:class:`~ails.providers.base.QueueWait`; with ``n`` > 1, the place of its
    first choice: :class:`~ails.local.choices.MergedChoices`). What else the
    runtime could refuse was refused before: a schema outside
    local/schema.py's allow-list, ``n`` beyond the slots.
    """
    tokens = await count_chat(runtime.tokenizer, plan.body)
    fits = check_fit(tokens, runtime.n_ctx, lambda: plan.choice_body(0), provider=provider)

    async def generation(
        i: int, *, include_usage: bool = True, replaces: ChunkStream | None = None, **extra: Any
    ) -> LocalStream:
        body = plan.choice_body(i, **extra)
        stream = LocalStream(
            runtime.server,
            body,
            provider=provider,
            timeouts=timeouts,
            include_usage=include_usage,
            model=model,
            gate=runtime.gate,
            max_queue=max_queue,
            announce=announce and fits,
        )
        stream.start(first=replaces is not None)
        if replaces is not None:
            # Stopped only now that this one is first in line: the slot it
            # gives back cannot go to a request behind (local/slots.py).
            await replaces.aclose()
        try:
            await stream.wait_started()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def choice(i: int) -> ChunkStream:
        tools = plan.tools
        if tools is None:
            return await generation(i)
        if tools.mode == "required" or tools.response_schema is not None:
            combined = tools.mode == "auto"  # auto with a JSON response_format
            schema = call_schema(tools, with_response=combined)
            inner = await generation(i, response_format=json_schema_format(schema))
            return CallStream(inner, tools, combined=combined)

        async def start_call(free: ChunkStream) -> ChunkStream:
            schema = json_schema_format(call_schema(tools))
            return CallStream(await generation(i, response_format=schema, replaces=free), tools)

        return AutoStream(await generation(i), start_call)

    stream: ChunkStream
    if plan.n == 1 and plan.tools is None:
        stream = await generation(0, include_usage=plan.include_usage)
    else:
        started = await asyncio.gather(*(choice(i) for i in range(plan.n)), return_exceptions=True)
        streams = [s for s in started if isinstance(s, ChunkStream)]
        failed = [s for s in started if isinstance(s, BaseException)]
        if failed:
            for s in streams:
                await s.aclose()
            raise failed[0]
        stream = streams[0] if plan.n == 1 else MergedChoices(streams)
        if not plan.include_usage:
            stream = FoldUsage(stream)
    if plan.empty_top_logprobs:
        stream = MapChunks(stream, empty_top_logprobs)
    return stream


__all__ = ["open_answer"]
