"""A legacy text completion (``POST /v1/completions``) on the embedded model:
OpenAI's parameters checked, turned into the runtime's request.

The runtime completes the prompt as it is, without the chat template.

- Honoured: ``prompt`` (a string, a list of one string, or a list of token
  ids), ``max_tokens`` (default 16, OpenAI's default for this endpoint; the
  runtime's own default is "until the context is full"), ``temperature``,
  ``top_p``, ``top_k``, ``stop``, ``seed``, ``frequency_penalty``,
  ``presence_penalty``, ``logit_bias``, ``stream``, ``stream_options``.
- Ignored, as on the chat path: ``user`` and the other names that do not
  change the answer (:data:`ails.local.params.IGNORED`).
- Refused with a 400 naming the parameter unless at the value that asks for
  nothing, as llama.cpp's own server refuses them: ``echo`` (true),
  ``suffix`` (insertion), ``best_of`` and ``n`` (above 1), ``logprobs`` (any
  number: the runtime gives log-probabilities in the chat format, not the
  legacy ``tokens``/``token_logprobs`` one, which a client would misread).
  The runtime itself would ignore ``echo`` and ``suffix`` silently and answer
  something other than what was asked.
- Several prompts in one request are refused too: one prompt, one answer.
"""

from __future__ import annotations

import difflib
from typing import Any

import msgspec

from ails.local.params import (
    IGNORED,
    _bad,
    _integer,
    _logit_bias,
    _number,
    _type_error,
)

#: OpenAI's default ``max_tokens`` for a text completion.
DEFAULT_MAX_TOKENS = 16

HONOURED = frozenset(
    {
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "stream",
        "stream_options",
    }
)
#: name -> (is this value a no-op?, why anything else is refused)
NO_OP_ONLY: dict[str, tuple[Any, str]] = {
    "echo": (lambda v: v is False, "the embedded model does not echo the prompt"),
    "suffix": (lambda v: v == "", "the embedded model does not insert text (suffix)"),
    "best_of": (lambda v: v == 1, "the embedded model generates one candidate"),
    "n": (lambda v: v == 1, "the embedded model generates one choice per text completion"),
    "logprobs": (
        lambda v: False,
        "the embedded model does not give legacy text-completion logprobs",
    ),
}
KNOWN = HONOURED | IGNORED | frozenset(NO_OP_ONLY)
_encode = msgspec.json.Encoder().encode


def plan_text(body: dict[str, Any]) -> bytes:
    """The runtime's request for ``body`` (OpenAI's, without ``model``); a
    :class:`~ails.errors.BadRequest` naming the parameter otherwise."""
    params = {k: v for k, v in body.items() if v is not None and k != "model"}
    _check_names(params)
    out: dict[str, Any] = {
        "prompt": _prompt(params.get("prompt")),
        "stream": True,  # always streamed inside; the stream ends with usage
        "stream_options": {"include_usage": True},
        "max_tokens": _integer(params, "max_tokens", 1) or DEFAULT_MAX_TOKENS,
    }
    for name, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("frequency_penalty", -2, 2),
        ("presence_penalty", -2, 2),
    ):
        if _number(params, name, low, high) is not None:
            out[name] = params[name]
    for name, low in (("top_k", 0), ("seed", -(2**63))):
        if _integer(params, name, low) is not None:
            out[name] = params[name]
    stop = params.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _type_error("stop", "a string or an array of strings", stop)
        if any(stops):
            out["stop"] = [s for s in stops if s]
    out.update(_logit_bias(params.get("logit_bias")))
    if "stream" in params and not isinstance(params["stream"], bool):
        raise _type_error("stream", "a boolean", params["stream"])
    if not isinstance(params.get("stream_options", {}), dict):
        raise _type_error("stream_options", "an object", params["stream_options"])
    return _encode(out)


def _check_names(params: dict[str, Any]) -> None:
    for name, value in params.items():
        if name in NO_OP_ONLY:
            is_no_op, why = NO_OP_ONLY[name]
            if not is_no_op(value):
                raise _bad(f"'{name}' is not supported: {why}.", name, "unsupported_parameter")
        elif name not in KNOWN:
            close = difflib.get_close_matches(name, sorted(KNOWN), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise _bad(
                f"Unrecognized request argument supplied: '{name}'. The embedded model takes "
                f"the parameters of OpenAI's Completions API.{hint}",
                name,
                "unsupported_parameter",
            )


def _prompt(prompt: Any) -> str | list[int]:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(type(t) is int and t >= 0 for t in prompt):
        return prompt  # token ids
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise _bad(
            f"'prompt' holds {len(prompt)} prompts; the embedded model completes one prompt "
            "per request (send them one by one).",
            "prompt",
        )
    raise _type_error("prompt", "a string, an array of one string or of token ids", prompt)


__all__ = ["DEFAULT_MAX_TOKENS", "HONOURED", "KNOWN", "NO_OP_ONLY", "plan_text"]
