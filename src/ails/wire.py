"""The wire format, written in one place: OpenAI chunks, completions, SSE
frames (plain, or named for the other dialects) and error events. The
gateway, its dialects and the CLI's ``--json`` use it.

A chunk or completion received from an upstream is passed on as its own JSON
text (the provider contract keeps it, so fields ails does not model survive);
one ails made is encoded here with every field a client expects
(``Chunk``'s own encoding omits defaults such as ``object``).

Every ``data:`` line holds one single-line JSON object in which the text
``data: `` never occurs (its colon is escaped as ``\\u003a``, which decodes the
same), so the seed's naive client, which deletes every ``data: `` from a line
before parsing it, reads the stream correctly too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from ails.providers.base import Batch, chunk_meta, raw_texts
from ails.types import Chunk, Completion

#: The end of every stream.
DONE = b"data: [DONE]\n\n"

_encode = msgspec.json.Encoder().encode


def one_line(text: str) -> str:
    """A JSON text as one ``data:`` payload (see the module docstring).
    Newlines in valid JSON only occur between tokens, where a space means the
    same."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if "\r" in text:
        text = text.replace("\r", " ")
    if "data: " in text:
        text = text.replace("data: ", "data\\u003a ")
    return text


def chunk_json(chunk: Chunk, *, include_usage: bool = True, model: str | None = None) -> bytes:
    """A chunk ails made as OpenAI's ``chat.completion.chunk``; ``b""`` for a
    usage-only chunk when usage was not asked for. ``model``, when given, is
    the name the client asked for (an alias, say)."""
    return _chunk_envelope(chunk, "chat.completion.chunk", chunk.choices, include_usage, model)


def _chunk_envelope(
    chunk: Chunk, kind: str, choices: Any, include_usage: bool, model: str | None
) -> bytes:
    """A streamed chunk of either OpenAI object: the same fields around its choices."""
    usage = chunk.usage
    if usage is not None and not include_usage:
        if not chunk.choices:
            return b""
        usage = None
    out: dict[str, Any] = {
        "id": chunk.id,
        "object": kind,
        "created": chunk.created,
        "model": model or chunk.model,
        "choices": choices,
    }
    if chunk.system_fingerprint is not None:
        out["system_fingerprint"] = chunk.system_fingerprint
    if usage is not None:
        out["usage"] = usage
    return _encode(out)


def completion_json(completion: Completion, *, model: str | None = None) -> bytes:
    """A completion ails made as OpenAI's ``chat.completion``; ``model``, when
    given, is the name the client asked for."""
    out: dict[str, Any] = {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": model or completion.model,
        "choices": completion.choices,
    }
    if completion.usage is not None:
        out["usage"] = completion.usage
    if completion.system_fingerprint is not None:
        out["system_fingerprint"] = completion.system_fingerprint
    return _encode(out)


def text_chunk_json(chunk: Chunk, *, include_usage: bool = True, model: str | None = None) -> bytes:
    """A chunk of a text completion ails made (the embedded model's) as
    OpenAI's legacy ``text_completion`` chunk: ``delta.content`` is the
    choice's ``text``. Usage, when asked for, rides on the chunk that has it."""
    choices = [_text_choice(c.index, c.delta.content, c.finish_reason) for c in chunk.choices]
    return _chunk_envelope(chunk, "text_completion", choices, include_usage, model)


def text_completion_json(completion: Completion, *, model: str | None = None) -> bytes:
    """A text completion ails made, joined, as OpenAI's ``text_completion``."""
    choices = []
    for c in completion.choices:
        text = c.message.content if isinstance(c.message.content, str) else ""
        choices.append(_text_choice(c.index, text, c.finish_reason))
    out: dict[str, Any] = {
        "id": completion.id,
        "object": "text_completion",
        "created": completion.created,
        "model": model or completion.model,
        "choices": choices,
    }
    if completion.usage is not None:
        out["usage"] = completion.usage
    if completion.system_fingerprint is not None:
        out["system_fingerprint"] = completion.system_fingerprint
    return _encode(out)


def _text_choice(index: int, text: str | None, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}


#: Encodes a chunk ails made: :func:`chunk_json` or :func:`text_chunk_json`.
ChunkEncoder = Callable[..., bytes]


def chunk_texts(
    batch: list[Chunk],
    *,
    include_usage: bool = True,
    model: str | None = None,
    encode: ChunkEncoder = chunk_json,
) -> list[str]:
    """Each chunk of a batch as one line of JSON: the text as received, or
    encoded by ``encode`` when ails made the chunk (with ``model``, the name
    asked for, when given). A usage-only chunk the client did not ask for is
    left out."""
    out = []
    # The chunks' meta: a batch read as plain frames is never decoded here.
    for text, chunk in zip(raw_texts(batch), chunk_meta(batch), strict=True):
        if text is None:  # a chunk ails made: its meta is the chunk
            assert isinstance(chunk, Chunk)
            data = encode(chunk, include_usage=include_usage, model=model)
            if data:
                out.append(one_line(data.decode()))
        elif include_usage or chunk.usage is None or chunk.choices:
            out.append(one_line(text))
    return out


def frame_batch(
    batch: list[Chunk],
    *,
    include_usage: bool,
    model: str | None = None,
    encode: ChunkEncoder = chunk_json,
) -> bytes:
    """The chunks of one read as ``data:`` events, for one write."""
    if isinstance(batch, Batch):
        frames = batch.frames
        # The frames as read are what chunk_texts would write when no chunk's
        # text holds a "data: " (the naive client) and, unless usage was asked
        # for, no chunk is usage-only (left out). Inline: this runs per read.
        if frames is not None:
            meta = batch.meta
            if frames.count(b"data: ") == len(meta):
                if include_usage:
                    return frames
                for chunk in meta:  # a loop, not all(): no generator per read
                    if chunk.usage is not None and not chunk.choices:
                        break
                else:
                    return frames
    parts = chunk_texts(batch, include_usage=include_usage, model=model, encode=encode)
    if not parts:
        return b""
    return ("data: " + "\n\ndata: ".join(parts) + "\n\n").encode()


def named_events(events: Iterable[tuple[str, Any]]) -> bytes:
    """SSE frames with an ``event:`` line each, for the dialects whose clients
    need one (the Anthropic SDK drops frames without it). msgspec writes
    compact JSON, with no line break (one in a string is escaped), so one
    ``data:`` line holds each payload as encoded (a payload given as bytes is
    compact JSON already); the same escape as
    :func:`one_line` keeps a naive ``data: `` stripper working. Bytes all the
    way: this runs for every token of every dialect stream."""
    out: list[bytes] = []
    for name, payload in events:
        if not name:  # whole frames the dialect wrote itself (see FRAMES)
            out.append(payload)
            continue
        # bytes: JSON the dialect wrote itself (a text delta, from a template).
        data = payload if isinstance(payload, bytes) else _encode(payload)
        if b"data: " in data:
            data = data.replace(b"data: ", b"data\\u003a ")
        head = _EVENT_HEADS.get(name)
        if head is None:
            head = _EVENT_HEADS[name] = b"event: " + name.encode() + b"\ndata: "
        out += (head, data, b"\n\n")
    return b"".join(out)


#: The name of an "event" that is whole SSE frames already, written by a
#: dialect from its templates, exactly as this function would have written them.
FRAMES = ""

#: ``event: NAME\ndata: `` by event name: a dialect has a dozen names.
_EVENT_HEADS: dict[str, bytes] = {}


def error_json(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> bytes:
    """OpenAI's error body."""
    return _encode({"error": {"message": message, "type": type, "code": code, "param": param}})


def error_event(message: str, *, type: str, code: str | None = None) -> bytes:
    """The in-band event that ends a stream that failed after it started.

    A ``data:`` line with no ``event:`` field: the openai SDK raises its
    ``APIError`` on an ``{"error": ...}`` payload, and the seed's naive client
    skips it (no ``content``) instead of choking on it.
    """
    text = error_json(message, type=type, code=code).decode()
    return b"data: " + one_line(text).encode() + b"\n\n"


#: What an SSE comment that tells a request's place in the line starts with.
QUEUE_COMMENT = "queued ahead="


def queue_comment(ahead: int) -> bytes:
    """``: queued ahead=N``: the request waits for a busy model, ``N`` requests
    before it. A comment line, which every SSE client skips (WHATWG), so any
    dialect's stream may carry it before its first event."""
    return b": " + QUEUE_COMMENT.encode() + str(ahead).encode() + b"\n\n"


def queue_ahead(comment: str) -> int | None:
    """The ``N`` of a ``queued ahead=N`` comment (its text after the colon), or
    ``None`` for any other comment."""
    text = comment.strip()
    if not text.startswith(QUEUE_COMMENT):
        return None
    digits = text[len(QUEUE_COMMENT) :]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
        return None
    return int(digits)


__all__ = [
    "DONE",
    "FRAMES",
    "QUEUE_COMMENT",
    "ChunkEncoder",
    "chunk_json",
    "chunk_texts",
    "completion_json",
    "error_event",
    "error_json",
    "frame_batch",
    "named_events",
    "one_line",
    "queue_ahead",
    "queue_comment",
    "text_chunk_json",
    "text_completion_json",
]
