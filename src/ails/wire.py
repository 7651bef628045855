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

from collections.abc import Iterable
from typing import Any

import msgspec

from ails.providers.base import raw_texts
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
    usage = chunk.usage
    if usage is not None and not include_usage:
        if not chunk.choices:
            return b""
        usage = None
    out: dict[str, Any] = {
        "id": chunk.id,
        "object": "chat.completion.chunk",
        "created": chunk.created,
        "model": model or chunk.model,
        "choices": chunk.choices,
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


def chunk_texts(
    batch: list[Chunk], *, include_usage: bool = True, model: str | None = None
) -> list[str]:
    """Each chunk of a batch as one line of JSON: the text as received, or
    encoded when ails made the chunk (with ``model``, the name asked for, when
    given). A usage-only chunk the client did not ask for is left out."""
    out = []
    for text, chunk in zip(raw_texts(batch), batch, strict=True):
        if text is None:
            data = chunk_json(chunk, include_usage=include_usage, model=model)
            if data:
                out.append(one_line(data.decode()))
        elif include_usage or chunk.usage is None or chunk.choices:
            out.append(one_line(text))
    return out


def frame_batch(batch: list[Chunk], *, include_usage: bool, model: str | None = None) -> bytes:
    """The chunks of one read as ``data:`` events, for one write."""
    parts = chunk_texts(batch, include_usage=include_usage, model=model)
    if not parts:
        return b""
    return ("data: " + "\n\ndata: ".join(parts) + "\n\n").encode()


def named_events(events: Iterable[tuple[str, Any]]) -> bytes:
    """SSE frames with an ``event:`` line each, for the dialects whose clients
    need one (the Anthropic SDK drops frames without it). Compact JSON has no
    line break, so one ``data:`` line holds each payload; the same escape keeps
    a naive ``data: `` stripper working."""
    return b"".join(
        b"event: "
        + name.encode()
        + b"\ndata: "
        + one_line(_encode(payload).decode()).encode()
        + b"\n\n"
        for name, payload in events
    )


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
    "QUEUE_COMMENT",
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
]
