"""The prompt the runtime builds from a chat request: the GGUF's chat template,
rendered as llama.cpp renders it, so that local/tokenizer.py can count it.

Jinja2 renders the template in its immutable sandbox (as Hugging Face does:
a template is data from a model file, not code we trust). Where llama.cpp's
own Jinja engine differs from Jinja2, it is followed instead, each difference
checked against the runtime's ``usage.prompt_tokens`` (tests/test_tokenizer.py):

- ``tojson`` keeps the keys' order and non-ASCII text as it is, with ``", "``
  and ``": "`` between items (Jinja2's sorts keys and escapes HTML and
  non-ASCII);
- a message's ``content`` given as text parts is their texts joined by a
  newline; a missing or null ``content`` is an empty string;
- a tool call's ``arguments`` (a JSON string on the wire) is the parsed object;
- a tool is rebuilt as ``{"type": "function", "function": {"name",
  "description", "parameters"}}``, in that order: a missing description is
  ``""``, missing parameters ``{}``, other keys (``strict``) dropped.
"""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _tojson(value: Any, indent: int | None = None) -> str:
    separators = (",", ": ") if indent is not None else (", ", ": ")
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


@lru_cache(maxsize=4)
def _compiled(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    elif content is None:
        out["content"] = ""
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_call(c) for c in calls]
    return out


def _call(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = dict(call["function"])
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        # Not JSON: params.py refuses such a call before it gets here.
        with contextlib.suppress(ValueError):
            fn["arguments"] = json.loads(arguments)
    return {**call, "function": fn}


def _tool(tool: Any) -> Any:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict):
        return tool
    parameters = fn.get("parameters")
    function = {
        "name": fn.get("name"),
        "description": fn.get("description") or "",
        "parameters": {} if parameters is None else parameters,
    }
    return {"type": "function", "function": function}


def render_chat(template: str, messages: list[dict[str, Any]], tools: list[Any] | None) -> str:
    """The prompt of ``messages`` (and ``tools``) with the generation prompt,
    as the runtime renders it. Raises ``jinja2.TemplateError`` when the
    template refuses the request (the runtime would too)."""
    context: dict[str, Any] = {
        "messages": [_message(m) for m in messages],
        "add_generation_prompt": True,
        "bos_token": "",
        "eos_token": "",
    }
    if tools:
        context["tools"] = [_tool(t) for t in tools]
    return _compiled(template).render(context)


__all__ = ["render_chat"]
