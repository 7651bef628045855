"""Anthropic's Messages API as an upstream, the pure half: an OpenAI-shaped chat
request into a Messages request, and Anthropic's events (or message) into
ails' chunks (or completion). The provider that sends them is
``providers/anthropic.py``; this module does no I/O, so it is tested on plain
values.

Anthropic wants turns that alternate: ``tool`` results become ``tool_result``
blocks of a user turn, and consecutive turns of one role are merged; system
messages become the top-level ``system``. Its streams number content blocks
across text and tool use; OpenAI numbers tool calls on their own, so the
block index is translated to a call index here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from ails.errors import BadRequest, ProtocolError, ProviderError, error_for_status
from ails.types import (
    Chunk,
    ChunkChoice,
    Completion,
    CompletionChoice,
    Delta,
    Message,
    Usage,
    call_piece,
)

#: Anthropic requires ``max_tokens``; this is sent when the caller gives none.
DEFAULT_MAX_TOKENS = 4096

#: stop_reason → finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic's error types, as the HTTP status they come with (for an error
#: event inside a stream, which has no status of its own).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def messages_body(model: str, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    """The Messages request for an OpenAI-shaped chat request."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _not_one(f"messages[{i}]", "a message object", message)
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id", "")),
                "content": _text(message.get("content")),
            }
            _append(turns, "user", [block])
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, i))
        else:
            _append(turns, "user", _user_blocks(message.get("content")))
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": params.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p", "top_k"):
        if params.get(name) is not None:
            body[name] = params[name]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("user"):
        body["metadata"] = {"user_id": params["user"]}
    tools = params.get("tools")
    if tools:
        body["tools"] = [_tool(t, k) for k, t in enumerate(tools)]
        choice = _tool_choice(params.get("tool_choice"))
        if params.get("parallel_tool_calls") is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            body["tool_choice"] = choice
    if params.get("stream"):
        body["stream"] = True
    return body


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            blocks.append(_image((part.get("image_url") or {}).get("url", "")))
        else:
            raise error_for_status(
                400,
                f"the anthropic provider cannot send content parts of type {kind!r}",
                provider="anthropic",
                code="unsupported_content",
            )
    return blocks


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                             "data": data}}  # fmt: skip
    return {"type": "image", "source": {"type": "url", "url": url}}


def _not_one(param: str, what: str, value: Any) -> BadRequest:
    """The typed 400 for a request field that is not what it must be (sent
    on, it would be the upstream's 400 anyway, or a crash here)."""
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return BadRequest(
        f"{param} must be {what}, not {shown}",
        status=400,
        provider="anthropic",
        code="invalid_type",
        param=param,
    )


def _assistant_blocks(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _not_one(f"messages[{i}].tool_calls", "an array of tool calls", calls)
    for j, call in enumerate(calls):
        piece = call_piece(call)
        if piece is None:
            raise _not_one(f"messages[{i}].tool_calls[{j}]", "a tool call", call)
        try:
            arguments = _decode(piece.arguments or "{}")
        except msgspec.DecodeError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": piece.id or "",
                "name": piece.name,
                "input": arguments if isinstance(arguments, dict) else {},
            }
        )
    return blocks


def _tool(tool: Any, k: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("function") or {}, dict):
        raise _not_one(f"tools[{k}]", "a function tool", tool)
    function = tool.get("function") or {}
    out = {
        "name": str(function.get("name", "")),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"auto": {"type": "auto"}, "required": {"type": "any"},
                "none": {"type": "none"}}.get(choice)  # fmt: skip
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    return {"type": "tool", "name": name} if name else None


# -- answers ---------------------------------------------------------------------------------


def _usage(usage: Any) -> Usage:
    usage = usage if isinstance(usage, dict) else {}
    prompt = int(usage.get("input_tokens") or 0) + int(usage.get("cache_read_input_tokens") or 0)
    prompt += int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return Usage(prompt, completion, prompt + completion)


def message_to_completion(body: dict[str, Any]) -> Completion:
    """A non-streamed Messages answer as a completion."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or []:
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(_call(block, arguments=_encode(block.get("input") or {}).decode()))
    message = Message(role="assistant", content="".join(texts), tool_calls=calls or None)
    finish = FINISH_REASONS.get(str(body.get("stop_reason")), "stop")
    return Completion(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        choices=[CompletionChoice(index=0, message=message, finish_reason=finish)],
        usage=_usage(body.get("usage")),
    )


def _call(block: dict[str, Any], *, arguments: str) -> dict[str, Any]:
    return {
        "id": str(block.get("id", "")),
        "type": "function",
        "function": {"name": str(block.get("name", "")), "arguments": arguments},
    }


def error_from_body(status: int, body: Any, *, provider: str) -> ProviderError:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` as an ails error."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or f"HTTP {status}")
    return error_for_status(status, message, provider=provider, body=body, code=error.get("type"))


def model_entry(model: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``/v1/models`` entry as an OpenAI one: ``created`` from the
    RFC 3339 ``created_at`` (Unix seconds), ``display_name`` kept."""
    from datetime import datetime

    entry: dict[str, Any] = {"id": str(model["id"]), "object": "model", "owned_by": "anthropic"}
    created = model.get("created_at")
    if isinstance(created, str):
        with contextlib.suppress(ValueError):  # a date we cannot read: no created
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
            entry["created"] = int(when.timestamp())
    if isinstance(model.get("display_name"), str):
        entry["display_name"] = model["display_name"]
    return entry


class EventsToChunks:
    """Anthropic stream events in (name and decoded data), chunks out."""

    def __init__(self, *, provider: str = "anthropic") -> None:
        self.provider = provider
        self.id = ""
        self.model = ""
        self._input: dict[str, Any] = {}
        self._calls: dict[int, int] = {}  # block index → tool-call index
        self.finished = False

    def _chunk(self, delta: Delta, finish: str | None = None) -> Chunk:
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish)
        return Chunk(id=self.id, model=self.model, choices=[choice])

    def feed(self, event: str, data: dict[str, Any]) -> list[Chunk]:
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = str(message.get("id", "")), str(message.get("model", ""))
            self._input = message.get("usage") or {}
            return [self._chunk(Delta(role="assistant"))]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._calls.setdefault(int(data.get("index", 0)), len(self._calls))
                call = {**_call(block, arguments=""), "index": index}
                return [self._chunk(Delta(tool_calls=[call]))]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk(Delta(content=str(block["text"])))]
            return []
        if kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        if kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            usage = _usage({**self._input, **(data.get("usage") or {})})
            finish = FINISH_REASONS.get(str(reason), "stop")
            last = self._chunk(Delta(), finish)
            return [last, Chunk(id=self.id, model=self.model, choices=[], usage=usage)]
        if kind == "message_stop":
            self.finished = True
            return []
        if kind == "error":
            error = data.get("error") or {}
            status = ERROR_STATUS.get(str(error.get("type")), 500)
            raise error_from_body(status, data, provider=self.provider)
        return []  # ping, and event types added later

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Chunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk(Delta(content=str(delta.get("text", ""))))]
        if kind == "input_json_delta" and index in self._calls:
            fragment = {"index": self._calls[index],
                        "function": {"arguments": str(delta.get("partial_json", ""))}}  # fmt: skip
            return [self._chunk(Delta(tool_calls=[fragment]))]
        return []  # thinking, signatures, citations: not part of an OpenAI answer

    def end(self) -> None:
        """The body ended: without ``message_stop`` the answer was cut."""
        if not self.finished:
            raise ProtocolError(
                "the stream ended before message_stop: the answer is incomplete",
                provider=self.provider,
                code="truncated_stream",
            )


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "ERROR_STATUS",
    "FINISH_REASONS",
    "EventsToChunks",
    "error_from_body",
    "message_to_completion",
    "messages_body",
    "model_entry",
]
