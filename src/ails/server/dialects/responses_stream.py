"""OpenAI's Responses API, answer side: chat chunks into the Responses event
sequence, or a whole completion into a ``response`` object (the same machine
fed one chunk, so both shapes agree). Pure: the clock and ids come in.

The order the SDKs and Codex depend on: ``response.created`` first; an
``output_item.added`` before any delta of its ``output_index``; the same
response id in every event and an item's id the same in ``added`` and
``done``; every event numbered by ``sequence_number``; and
``response.completed`` (or ``.incomplete``) carrying the full ``output``,
since Codex fails without it and the SDK's ``output_text`` reads it.
"""

from __future__ import annotations

from typing import Any

from ails.server.dialects import responses_frames as frames
from ails.server.dialects.common import (
    DialectEvent,
    dump_json,
    encode_json,
    escaped_string,
    json_string,
    load_arguments,
    new_id,
)
from ails.server.dialects.responses_request import ResponsesRequest
from ails.types import CallPiece, Chunk, ChunkChoice, Completion, Delta, Usage, call_piece
from ails.wire import FRAMES


def _usage(usage: Usage | None) -> dict[str, Any]:
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


#: The response object; statuses are ASCII with nothing to escape,
#: and the echoed request fields are never empty (see ResponsesRequest.echo).
_RESPONSE = (
    b'{"id":%s,"object":"response","created_at":%s,"status":"%s","model":%s,"output":%s,'
    b'"error":%s,"incomplete_details":%s,"usage":%s,%s}'
)
_INCOMPLETE = b'{"reason":"max_output_tokens"}'

#: What a quiet stream returns for an event: nobody reads it.
_QUIET: DialectEvent = ("", {})


class ResponseStream:
    """``start()``, ``feed(chunk)`` per chunk, then ``finish()`` (or
    ``fail(code, message)``); ``response()`` is the object as it stands."""

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        created_at: float,
        response_id: str | None = None,
        quiet: bool = False,
    ) -> None:
        self.request = request
        #: Build the response only, no events (a non-streamed answer has no use for them).
        self._quiet = quiet
        self.id = response_id or new_id("resp_")
        self._created_at = created_at
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._open_key: str | None = None  # "text", or "call:N" for OpenAI's call index N
        self._status = "in_progress"
        self._usage: Usage | None = None
        self._finish: str | None = None
        self._error: dict[str, Any] | None = None
        #: The open message's delta frame, to fill with a number and the text.
        self._delta = b""
        #: The echoed request fields as JSON members, encoded once (see response_json).
        self._echo_json: bytes | None = None

    # -- the response object ------------------------------------------------------------------

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self._created_at,
            "status": self._status,
            "model": self.request.model,
            "output": list(self._output),
            "error": self._error,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if self._status == "incomplete" else None
            ),
            "usage": _usage(self._usage) if self._status != "in_progress" else None,
            **self.request.echo,
        }
        return out

    def response_json(self) -> bytes:
        """:meth:`response` as compact JSON, the same members in the same order,
        written from a template: a stream sends the object three times, each
        repeating the echoed request (tools included), which is encoded once."""
        if self._echo_json is None:
            self._echo_json = encode_json(self.request.echo)[1:-1]
        status = self._status
        return _RESPONSE % (
            json_string(self.id),
            encode_json(self._created_at),
            status.encode(),
            json_string(self.request.model),
            encode_json(self._output) if self._output else b"[]",
            encode_json(self._error) if self._error is not None else b"null",
            _INCOMPLETE if status == "incomplete" else b"null",
            encode_json(_usage(self._usage)) if status != "in_progress" else b"null",
            self._echo_json,
        )

    def history_message(self) -> dict[str, Any]:
        """The answer as one chat message, to continue the conversation from."""
        text = "".join(
            part["text"]
            for item in self._output
            if item["type"] == "message"
            for part in item["content"]
        )
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        calls = [self._chat_call(item) for item in self._output if item["type"] != "message"]
        if calls:
            message["tool_calls"] = calls
        return message

    def _chat_call(self, item: dict[str, Any]) -> dict[str, Any]:
        name = item["name"]
        if item.get("namespace"):
            name = next(
                flat
                for flat, pair in self.request.tool_names.namespaced.items()
                if pair == (item["namespace"], item["name"])
            )
        arguments = item.get("arguments")
        if item["type"] == "custom_tool_call":
            arguments = dump_json({"input": item["input"]})
        return {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }

    # -- events -------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> DialectEvent:
        if self._quiet:
            return _QUIET
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return (kind, payload)

    def _response_event(self, kind: str, response: bytes) -> DialectEvent:
        if self._quiet:
            return _QUIET
        self._seq += 1
        return (FRAMES, frames.response_event(kind, self._seq - 1, response))

    def start(self) -> list[DialectEvent]:
        response = self.response_json()  # the same in both: nothing happened in between
        return [
            self._response_event("response.created", response),
            self._response_event("response.in_progress", response),
        ]

    def feed(self, chunk: Chunk) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # a response has one answer
            delta = choice.delta
            text = delta.content or delta.refusal
            if text:
                self._text(text, events)
            for call in delta.tool_calls or ():
                piece = call_piece(call)
                if piece is not None:  # a backend's malformed call: left out
                    events += self._call(piece)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _text(self, text: str, events: list[DialectEvent]) -> None:
        if self._open_key != "text":
            events += self._close()
            item: dict[str, Any] = {
                "type": "message",
                "id": new_id("msg_"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self._parts: list[str] = []
            self._open, self._open_key = {**item, "_text": self._parts}, "text"
            if not self._quiet:
                opened = frames.message_opened(self._seq, len(self._output), item["id"])
                events.append((FRAMES, opened))
                self._seq += 2
                self._delta = frames.text_delta_template(len(self._output), item["id"])
        self._parts.append(text)
        if not self._quiet:
            # One of these per token: its item's template, a number and the text.
            events.append((FRAMES, self._delta % (self._seq, escaped_string(text))))
            self._seq += 1

    def _call(self, call: CallPiece) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        key = f"call:{call.index or 0}"
        if self._open_key != key:
            events += self._close()
            name = call.name
            item: dict[str, Any] = {
                "id": new_id("fc_"),
                "call_id": call.id or new_id("call_"),
            }
            if name in self.request.tool_names.custom:
                item.update(type="custom_tool_call", name=name, input="")
            else:
                namespace, name = self.request.tool_names.namespaced.get(name, (None, name))
                item.update(type="function_call", name=name, arguments="", status="in_progress")
                if namespace:
                    item["namespace"] = namespace
            events += self._add(item, key)
        assert self._open is not None
        fragment = call.arguments
        if fragment:
            self._open["_text"].append(fragment)
            # A custom tool's input is known only once its JSON wrapper is whole.
            if self._open["type"] == "function_call":
                events.append(
                    self._item_event("response.function_call_arguments.delta", self._open, fragment)
                )
        return events

    def _add(self, item: dict[str, Any], key: str) -> list[DialectEvent]:
        self._open, self._open_key = {**item, "_text": []}, key
        event = self._event("response.output_item.added", output_index=len(self._output), item=item)
        return [event]

    def _item_event(self, kind: str, item: dict[str, Any] | None, delta: str) -> DialectEvent:
        assert item is not None
        return self._event(kind, item_id=item["id"], output_index=len(self._output), delta=delta)

    def _close(self) -> list[DialectEvent]:
        """Finish the open item: its ``done`` events, and it joins ``output``."""
        if self._open is None:
            return []
        item, self._open, self._open_key = self._open, None, None
        text = "".join(item.pop("_text"))
        events: list[DialectEvent] = []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item.update(status="completed", content=[part])
            self._output.append(item)
            if self._quiet:
                return []
            self._seq += 3
            closed = frames.message_closed(self._seq - 3, len(self._output) - 1, item["id"], text)
            return [(FRAMES, closed)]
        elif item["type"] == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=len(self._output),
                    name=item["name"],
                    arguments=text,
                )
            )
            item.update(status="completed", arguments=text)
        else:
            wrapped = load_arguments(text)
            value = wrapped.get("input") if isinstance(wrapped, dict) else wrapped
            item["input"] = value if isinstance(value, str) else text
            events.append(
                self._item_event("response.custom_tool_call_input.delta", item, item["input"])
            )
            events.append(
                self._event(
                    "response.custom_tool_call_input.done",
                    item_id=item["id"],
                    output_index=len(self._output),
                    input=item["input"],
                )
            )
        events.append(
            self._event("response.output_item.done", output_index=len(self._output), item=item)
        )
        self._output.append(item)
        return events

    def finish(self) -> list[DialectEvent]:
        events = self._close()
        self._status = "incomplete" if self._finish == "length" else "completed"
        if not self._quiet:
            kind = f"response.{self._status}"
            events.append(self._response_event(kind, self.response_json()))
        return events

    def fail(self, code: str, message: str) -> list[DialectEvent]:
        """A failure after the stream began: ``response.failed``, never a silent end."""
        self._open, self._open_key = None, None
        self._status = "failed"
        self._error = {"code": code, "message": message}
        return [self._response_event("response.failed", self.response_json())]


def completion_to_response(
    completion: Completion,
    request: ResponsesRequest,
    *,
    created_at: float,
    response_id: str | None = None,
) -> tuple[bytes, ResponseStream]:
    """A whole answer as a ``response`` object (JSON), built by the stream machine from
    one chunk; the machine is returned too, for the conversation's history."""
    stream = ResponseStream(request, created_at=created_at, response_id=response_id, quiet=True)
    if completion.choices:
        choice = completion.choices[0]
        message = choice.message
        calls = [
            {**call, "index": i} if isinstance(call, dict) else call  # not one: feed drops it
            for i, call in enumerate(message.tool_calls or [])
        ]
        text = message.content if isinstance(message.content, str) else None
        delta = Delta(content=text or None, tool_calls=calls or None)
        chunk = Chunk(
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=choice.finish_reason)],
            usage=completion.usage,
        )
        stream.feed(chunk)
    elif completion.usage is not None:
        stream.feed(Chunk(usage=completion.usage))
    stream.finish()
    return stream.response_json(), stream


__all__ = ["ResponseStream", "completion_to_response"]
