"""The Responses stream's frequent SSE frames, written from templates.

A 10-chunk answer is 18 events; building a dict for each and encoding it cost
more than the rest of the gateway's work on the request. The events every
text answer has (the message item's opening and closing, each text delta, the
``response`` objects) are written here as whole frames, exactly as
:func:`ails.wire.named_events` would have written the dicts: the same members
in the same order, compact JSON, and the same ``data: `` escape on the one
part a client controls (the text; ids, numbers and event names are ours)."""

from __future__ import annotations

from ails.server.dialects.common import json_string


def _frame(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def _escaped(json_text: bytes) -> bytes:
    return json_text.replace(b"data: ", b"data\\u003a ") if b"data: " in json_text else json_text


def response_event(kind: str, seq: int, response: bytes) -> bytes:
    """``response.created`` (and the other events that carry the object)."""
    payload = b'{"type":"%s","sequence_number":%d,"response":%s}' % (kind.encode(), seq, response)
    return _frame(kind, _escaped(payload))


_OPENED = _frame(
    "response.output_item.added",
    b'{"type":"response.output_item.added","sequence_number":%d,"output_index":%d,'
    b'"item":{"type":"message","id":%s,"status":"in_progress","role":"assistant","content":[]}}',
) + _frame(
    "response.content_part.added",
    b'{"type":"response.content_part.added","sequence_number":%d,"item_id":%s,'
    b'"output_index":%d,"content_index":0,'
    b'"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}',
)


def message_opened(seq: int, index: int, item_id: str) -> bytes:
    """``output_item.added`` and ``content_part.added`` of a message (two numbers)."""
    quoted = json_string(item_id)
    return _OPENED % (seq, index, quoted, seq + 1, quoted, index)


def text_delta_template(index: int, item_id: str) -> bytes:
    """An ``output_text.delta`` frame of one item, to fill in with its
    sequence number and the ``escaped_string`` of its text: one per token."""
    fixed = b'"item_id":%s,"output_index":%d' % (json_string(item_id), index)
    return _frame(
        "response.output_text.delta",
        b'{"type":"response.output_text.delta","sequence_number":%d,'
        + fixed.replace(b"%", b"%%")
        + b',"content_index":0,"delta":%s,"logprobs":[]}',
    )


_CLOSED = (
    _frame(
        "response.output_text.done",
        b'{"type":"response.output_text.done","sequence_number":%d,"item_id":%s,'
        b'"output_index":%d,"content_index":0,"text":%s,"logprobs":[]}',
    )
    + _frame(
        "response.content_part.done",
        b'{"type":"response.content_part.done","sequence_number":%d,"item_id":%s,'
        b'"output_index":%d,"content_index":0,'
        b'"part":{"type":"output_text","text":%s,"annotations":[],"logprobs":[]}}',
    )
    + _frame(
        "response.output_item.done",
        b'{"type":"response.output_item.done","sequence_number":%d,"output_index":%d,'
        b'"item":{"type":"message","id":%s,"status":"completed","role":"assistant",'
        b'"content":[{"type":"output_text","text":%s,"annotations":[],"logprobs":[]}]}}',
    )
)


def message_closed(seq: int, index: int, item_id: str, text: str) -> bytes:
    """``output_text.done``, ``content_part.done``, ``output_item.done`` (three numbers)."""
    quoted, body = json_string(item_id), _escaped(json_string(text))
    return _CLOSED % (
        seq,
        quoted,
        index,
        body,
        seq + 1,
        quoted,
        index,
        body,
        seq + 2,
        index,
        quoted,
        body,
    )


__all__ = [
    "message_closed",
    "message_opened",
    "response_event",
    "text_delta_template",
]
