"""How many tokens a request's prompt is, by the embedded model's own tokenizer.

The runtime exposes no tokenizer call of its own (xllamacpp's ``Server`` has
chat, completions, embeddings and rerank handlers only, and its HTTP listener,
which has ``/tokenize``, is made unreachable on purpose: runtime.py). What it
does report is ``usage.prompt_tokens``: the messages rendered by the model's
chat template (tools included) and tokenized, exactly what a generation sees.
So a count is a one-token generation of the same request, read for its usage.

What that costs: the prompt is evaluated once, and stays in the runtime's
prompt cache, so the request that usually follows a count (an agent counts,
then sends the same prompt) starts from the cache. A prompt longer than the
context is refused by the runtime before any evaluation, with its token count
in the refusal (``n_prompt_tokens``): that count is read from there, free.
"""

from __future__ import annotations

from typing import Any

from ails.errors import BadRequest, ProtocolError
from ails.local.bridge import LocalStream
from ails.local.params import plan_request
from ails.providers.base import Timeouts


async def count_prompt_tokens(
    server: Any,
    messages: list[Any],
    tools: list[Any] | None,
    *,
    slots: int,
    provider: str,
    timeouts: Timeouts,
) -> int:
    """The templated prompt's token count (checks the request as ``connect`` does)."""
    plan = plan_request(messages, {"tools": tools, "max_tokens": 1, "temperature": 0}, slots=slots)
    # Tools stay in the body (the template renders them); tool_choice "none"
    # keeps the runtime from constraining the one token.
    stream = LocalStream(
        server, plan.choice_body(0), provider=provider, timeouts=timeouts, include_usage=True
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
