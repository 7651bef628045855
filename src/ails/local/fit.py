"""Whether a request's prompt fits the context, decided before it queues.

The runtime tokenises a request only once it has a slot, so a prompt over the
context would learn it after the whole wait, and after the client had been
told it was waiting. Counted here first (local/tokenizer.py, the prompt the
runtime will build: local/chat_render.py), a request is one of:

- over the context: a 400 ``context_length_exceeded`` now, the runtime's own
  error (the runtime refuses a prompt of ``n_ctx`` tokens or more, whatever
  ``max_tokens`` says: generation just stops at the context's end);
- clearly within it: it may queue and say so;
- within :data:`COUNT_MARGIN` tokens of the limit: it waits silently and the
  runtime decides, as does a request that cannot be counted (a model whose
  tokenizer is not rebuilt here, a template that fails in Jinja2), for which
  the old bound stands: its JSON plus 1 KiB within ``n_ctx`` bytes.

The count matched the runtime's ``usage.prompt_tokens`` exactly on every
request tried (tests/test_tokenizer.py); the margin is for what was not tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ails.errors import BadRequest
from ails.local.chat_render import render_chat
from ails.local.generation import runtime_error
from ails.local.slots import certainly_fits
from ails.local.tokenizer import Tokenizer

#: Tokens by which a count is trusted to be right, at most: nearer the limit,
#: the runtime decides.
COUNT_MARGIN = 8
#: Characters of prompt beyond which it is counted in a worker thread: ~4 ms
#: per 3 KB of new text, so a 100 KB prompt would hold the event loop ~30 ms.
OFF_LOOP_CHARS = 32768


async def count_chat(tokenizer: Tokenizer | None, body: dict[str, Any]) -> int | None:
    """:func:`chat_tokens`, off the event loop when the prompt is long."""
    if tokenizer is None:
        return None
    size = sum(_chars(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    if size < OFF_LOOP_CHARS:
        return chat_tokens(tokenizer, body)
    return await asyncio.to_thread(chat_tokens, tokenizer, body)


async def count_text(tokenizer: Tokenizer | None, prompt: Any) -> int | None:
    """:func:`text_tokens`, off the event loop when the prompt is long."""
    text = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
    if isinstance(text, str) and len(text) >= OFF_LOOP_CHARS:
        return await asyncio.to_thread(text_tokens, tokenizer, prompt)
    return text_tokens(tokenizer, prompt)


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # text parts (params.py let no other kind through)
        return sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return 0


def chat_tokens(tokenizer: Tokenizer | None, body: dict[str, Any]) -> int | None:
    """The tokens of the prompt the runtime builds from a chat request's
    ``messages`` and ``tools``; None when it cannot be known here."""
    if tokenizer is None or tokenizer.chat_template is None:
        return None
    try:
        text = render_chat(tokenizer.chat_template, body["messages"], body.get("tools"))
    except Exception:  # a template is a model file's program: any failure means "unknown"
        return None
    return tokenizer.count(text)


def text_tokens(tokenizer: Tokenizer | None, prompt: Any) -> int | None:
    """The tokens of a text completion's prompt (text, or token ids as they are)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list):
        return len(prompt)
    if tokenizer is None or not isinstance(prompt, str):
        return None
    return tokenizer.count(prompt)


def check_fit(
    tokens: int | None,
    n_ctx: int,
    body: Callable[[], bytes],
    *,
    provider: str,
    param: str = "messages",
) -> bool:
    """True when the prompt clearly fits (it may announce its wait), False when
    only the runtime can tell; raises the runtime's 400 when it clearly does not.
    ``body`` gives the runtime's request, for the bound on an uncounted prompt."""
    if tokens is None:
        return certainly_fits(body(), n_ctx)
    if tokens - COUNT_MARGIN >= n_ctx:
        raise context_exceeded(tokens, n_ctx, provider=provider, param=param)
    return tokens + COUNT_MARGIN < n_ctx


def context_exceeded(tokens: int, n_ctx: int, *, provider: str, param: str) -> BadRequest:
    """The error the runtime gives such a prompt once it has a slot, given now."""
    err = {
        "code": 400,
        "message": f"request ({tokens} tokens) exceeds the available context size "
        f"({n_ctx} tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": tokens,
        "n_ctx": n_ctx,
    }
    error = runtime_error(err, provider=provider, param=param)
    assert isinstance(error, BadRequest)
    return error


__all__ = [
    "COUNT_MARGIN",
    "chat_tokens",
    "check_fit",
    "context_exceeded",
    "count_chat",
    "count_text",
    "text_tokens",
]
