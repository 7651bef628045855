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

from ails.server.dialects.common import (
    DialectEvent,
    dump_json,
    json_string,
    load_arguments,
    new_id,
)
from ails.server.dialects.responses_request import ResponsesRequest
from ails.types import Chunk, ChunkChoice, Completion, Delta, Usage


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
        #: The open message's delta payload between sequence number and text.
        self._text_tail = b""

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

    def start(self) -> list[DialectEvent]:
        response = self.response()  # the same object in both: nothing happened in between
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def feed(self, chunk: Chunk) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # a response has one answer
            text = choice.delta.content or choice.delta.refusal
            if text:
                events += self._text(text)
            for call in choice.delta.tool_calls or ():
                if isinstance(call, dict):
                    events += self._call(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _text(self, text: str) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        if self._open_key != "text":
            events += self._close()
            item: dict[str, Any] = {
                "type": "message",
                "id": new_id("msg_"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events += self._add(item, "text")
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._content_event("response.content_part.added", self._open, part=part))
            self._text_tail = b',"item_id":%s,"output_index":%d,"content_index":0,"delta":' % (
                json_string(item["id"]),
                len(self._output),
            )
        open_item = self._open
        assert open_item is not None
        open_item["_text"].append(text)
        if self._quiet:
            return events
        # One of these per token: written from a template, not built and encoded.
        delta = b'{"type":"response.output_text.delta","sequence_number":%d%s%s,"logprobs":[]}' % (
            self._seq,
            self._text_tail,
            json_string(text),
        )
        self._seq += 1
        events.append(("response.output_text.delta", delta))
        return events

    def _call(self, call: dict[str, Any]) -> list[DialectEvent]:
        events: list[DialectEvent] = []
        key = f"call:{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open_key != key:
            events += self._close()
            name = function.get("name") or ""
            item: dict[str, Any] = {
                "id": new_id("fc_"),
                "call_id": call.get("id") or new_id("call_"),
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
        fragment = function.get("arguments") or ""
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

    def _content_event(self, kind: str, item: dict[str, Any] | None, **fields: Any) -> DialectEvent:
        assert item is not None
        return self._event(
            kind, item_id=item["id"], output_index=len(self._output), content_index=0, **fields
        )

    def _close(self) -> list[DialectEvent]:
        """Finish the open item: its ``done`` events, and it joins ``output``."""
        if self._open is None:
            return []
        item, self._open, self._open_key = self._open, None, None
        text = "".join(item.pop("_text"))
        events: list[DialectEvent] = []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            events.append(
                self._content_event("response.output_text.done", item, text=text, logprobs=[])
            )
            events.append(self._content_event("response.content_part.done", item, part=part))
            item.update(status="completed", content=[part])
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
            events.append(self._event(f"response.{self._status}", response=self.response()))
        return events

    def fail(self, code: str, message: str) -> list[DialectEvent]:
        """A failure after the stream began: ``response.failed``, never a silent end."""
        self._open, self._open_key = None, None
        self._status = "failed"
        self._error = {"code": code, "message": message}
        return [self._event("response.failed", response=self.response())]


def completion_to_response(
    completion: Completion,
    request: ResponsesRequest,
    *,
    created_at: float,
    response_id: str | None = None,
) -> tuple[dict[str, Any], ResponseStream]:
    """A whole answer as a ``response`` object, built by the stream machine from
    one chunk; the machine is returned too, for the conversation's history."""
    stream = ResponseStream(request, created_at=created_at, response_id=response_id, quiet=True)
    if completion.choices:
        choice = completion.choices[0]
        message = choice.message
        calls = [{**call, "index": i} for i, call in enumerate(message.tool_calls or [])]
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
    return stream.response(), stream


__all__ = ["ResponseStream", "completion_to_response"]
