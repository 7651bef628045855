"""How many tokens a request's prompt is, by the runtime itself: for a model
whose tokenizer ails does not rebuild (local/tokenizer.py counts the others
without a generation).

The runtime exposes no tokenizer call of its own (xllamacpp's ``Server`` has
chat, completions, embeddings and rerank handlers only, and its HTTP listener,
which has ``/tokenize``, is made unreachable on purpose: runtime.py). What it
does report is ``usage.prompt_tokens``: the messages rendered by the model's
chat template (tools included) and tokenized, exactly what a generation sees.
So a count is a one-token generation of the same request, read for its usage;
it takes its place in the slots' line like any generation (local/slots.py).

What that costs: the prompt is evaluated once, and stays in the runtime's
prompt cache, so the request that usually follows a count (an agent counts,
then sends the same prompt) starts from the cache. A prompt longer than the
context is refused by the runtime before any evaluation, with its token count
in the refusal (``n_prompt_tokens``): that count is read from there, free.
"""

from __future__ import annotations

from ails.errors import BadRequest, ProtocolError
from ails.local.bridge import LocalStream
from ails.local.params import Plan
from ails.local.runtime import Runtime
from ails.providers.base import Timeouts


async def count_prompt_tokens(
    runtime: Runtime, plan: Plan, *, provider: str, timeouts: Timeouts, max_queue: int
) -> int:
    """The templated prompt's token count, from a checked plan of the request."""
    # Tools stay in the body (the template renders them); tool_choice "none"
    # keeps the runtime from constraining the one token.
    body = plan.choice_body(0, max_tokens=1, temperature=0)
    stream = LocalStream(
        runtime.server,
        body,
        provider=provider,
        timeouts=timeouts,
        include_usage=True,
        gate=runtime.gate,
        max_queue=max_queue,
    )
    stream.start()
    try:
        await stream.wait_started()
        async for batch in stream:
            for chunk in batch:
                if chunk.usage is not None:
                    return chunk.usage.prompt_tokens
    except BadRequest as exc:
        counted = exc.body.get("n_prompt_tokens") if isinstance(exc.body, dict) else None
        if exc.code == "context_length_exceeded" and isinstance(counted, int):
            return counted
        raise
    finally:
        await stream.aclose()
    raise ProtocolError(
        "the local runtime reported no usage for the prompt", provider=provider, code="no_usage"
    )


__all__ = ["count_prompt_tokens"]
