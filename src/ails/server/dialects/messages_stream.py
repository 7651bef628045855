"""Anthropic's Messages API, answer side: chat chunks into Anthropic's events,
a completion into its ``message``, and errors in its shape. Pure: no I/O.

Every frame has an ``event:`` line (the Python SDK drops frames without one),
``message_delta`` carries ``usage``, and every block that is started is
stopped (without ``content_block_stop`` Claude Code prints an empty answer).
"""

from __future__ import annotations

import re
from typing import Any

from ails.server.dialects.common import DialectEvent, escaped_string, load_arguments, new_id
from ails.server.errors import UPSTREAM_AUTH_FAILED
from ails.types import Chunk, Completion, Usage, call_piece
from ails.wire import FRAMES

#: finish_reason → stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

#: The gateway's statuses as Anthropic answers them: (status, error type).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


#: OpenAI's wording of a prompt over the context (the embedded model's too).
_CONTEXT_NUMBERS = re.compile(r"maximum context length is (\d+) tokens.*?resulted in (\d+) tokens")


def error_status_and_body(
    status: int, message: str, code: str | None = None
) -> tuple[int, dict[str, Any]]:
    """An error as Anthropic sends it. A backend that is down or a full queue
    is 529 ``overloaded_error`` (which Anthropic's SDKs retry); an upstream
    that refuses the gateway's own key is 500 ``api_error`` (the client's key
    is fine and a retry cannot help: not "overloaded"); the gateway's own 415
    and 421 keep their status. A prompt over the context is said as Anthropic
    says it (``prompt is too long: N tokens > M maximum``), which Claude Code
    reads to compact its history."""
    if code == "context_length_exceeded":
        numbers = _CONTEXT_NUMBERS.search(message)
        if numbers is not None:
            limit, given = numbers.groups()
            message = f"prompt is too long: {given} tokens > {limit} maximum ({message})"
        else:
            message = f"prompt is too long: {message}"
    if code == UPSTREAM_AUTH_FAILED:
        status = 500
    elif status in (502, 503):
        status = 529
    elif status >= 500 and status not in _ERROR_TYPES:
        status = 500
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def error_event(status: int, message: str, code: str | None = None) -> DialectEvent:
    """A failure after the stream began, in the stream's own form."""
    return ("error", error_status_and_body(status, message, code)[1])


def ping() -> DialectEvent:
    return ("ping", {"type": "ping"})


def _usage(usage: Usage | None, input_tokens: int) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": input_tokens, "output_tokens": 0}
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def completion_to_message(
    completion: Completion, *, model: str, message_id: str | None = None
) -> dict[str, Any]:
    """A whole answer as Anthropic's ``message`` object."""
    content: list[dict[str, Any]] = []
    finish = None
    if completion.choices:
        choice = completion.choices[0]
        finish = choice.finish_reason
        text = choice.message.content
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
        for call in choice.message.tool_calls or []:
            piece = call_piece(call)
            if piece is None:
                continue  # a backend's malformed call: left out, not a crash
            content.append(
                {
                    "type": "tool_use",
                    "id": piece.id or new_id("toolu_"),
                    "name": piece.name,
                    "input": load_arguments(piece.arguments),
                }
            )
    if not content:
        content.append({"type": "text", "text": ""})
    return {
        "id": message_id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(finish or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage(completion.usage, 0),
    }


class MessageStream:
    """Chat chunks in, Messages events out: ``start()``, ``feed(chunk)`` for
    each chunk, then ``finish()``. Text and each tool call become content
    blocks, numbered in the order they begin; one block is open at a time."""

    def __init__(self, *, model: str, message_id: str | None = None, input_tokens: int = 0):
        self.model = model
        self.message_id = message_id or new_id("msg_")
        self._input_tokens = input_tokens
        self._index = -1  # the open block's index; -1: none yet
        self._open: str | None = None  # "text", or "tool:N" for OpenAI's call index N
        self._finish: str | None = None
        self._usage: Usage | None = None
        #: The open text block's delta frame up to its text (one per token: a template).
        self._text_head = b""

    def start(self) -> list[DialectEvent]:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, chunk: Chunk) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # Messages has one answer
            delta = choice.delta
            text = delta.content or delta.refusal
            if text:
                if self._open != "text":
                    events += self._begin("text", {"type": "text", "text": ""})
                    self._text_head = (
                        b"event: content_block_delta\ndata: "
                        b'{"type":"content_block_delta","index":%d,'
                        b'"delta":{"type":"text_delta","text":' % self._index
                    )
                # A whole frame, as named_events would write it: the text is
                # the one part a client controls, so the only one escaped.
                events.append((FRAMES, self._text_head + escaped_string(text) + b"}}\n\n"))
            for call in delta.tool_calls or ():
                events += self._tool_delta(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _tool_delta(self, call: Any) -> list[DialectEvent]:
        piece = call_piece(call)
        if piece is None:
            return []  # a backend's malformed call: left out, not a crash
        events: list[DialectEvent] = []
        key = f"tool:{piece.index or 0}"
        if self._open != key:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": piece.id or new_id("toolu_"),
                "name": piece.name,
                "input": {},
            }
            events += self._begin(key, block)
        if piece.arguments:
            delta = {"type": "input_json_delta", "partial_json": piece.arguments}
            events.append(self._delta(delta))
        return events

    def _begin(self, key: str, block: dict[str, Any]) -> list[DialectEvent]:
        events = self._stop_block()
        self._index += 1
        self._open = key
        payload = {"type": "content_block_start", "index": self._index, "content_block": block}
        events.append(("content_block_start", payload))
        return events

    def _delta(self, delta: dict[str, Any]) -> DialectEvent:
        payload = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return ("content_block_delta", payload)

    def _stop_block(self) -> list[DialectEvent]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def finish(self) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        if self._index < 0:  # an empty answer is still one (empty) text block
            events += self._begin("text", {"type": "text", "text": ""})
        events += self._stop_block()
        delta = {
            "stop_reason": STOP_REASONS.get(self._finish or "stop", "end_turn"),
            "stop_sequence": None,
        }
        usage = _usage(self._usage, self._input_tokens)
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


__all__ = [
    "STOP_REASONS",
    "MessageStream",
    "completion_to_message",
    "error_event",
    "error_status_and_body",
    "ping",
]
