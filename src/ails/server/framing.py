"""Stream framing: chunks as ``data:`` lines, one write per batch.

Every ``data:`` line holds one single-line JSON object in which the text
``data: `` never occurs (its colon is escaped as ``\\u003a``, which decodes the
same), so the seed's naive client, which deletes every ``data: `` from a line
before parsing it, reads the stream correctly too. A chunk received from an
upstream is forwarded as its own JSON text (fields ails does not model
survive); a chunk ails made is encoded here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ails.providers.base import raw_texts
from ails.types import Chunk, Completion

_encode = msgspec.json.Encoder().encode


def _safe(text: str) -> str:
    """One line, and no ``data: `` inside (see the module docstring). Newlines in
    valid JSON only occur between tokens, where a space means the same."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if "data: " in text:
        text = text.replace("data: ", "data\\u003a ")
    return text


def frame_batch(batch: list[Chunk], include_usage: bool) -> bytes:
    """The chunks of one read as one write; a usage-only chunk the client did
    not ask for is left out."""
    parts = []
    for text, chunk in zip(raw_texts(batch), batch, strict=True):
        if text is None:
            parts.append(_chunk_text(chunk, include_usage))
            continue
        if not include_usage and chunk.usage is not None and not chunk.choices:
            continue
        parts.append(_safe(text))
    parts = [p for p in parts if p]
    if not parts:
        return b""
    return ("data: " + "\n\ndata: ".join(parts) + "\n\n").encode()


def _chunk_text(chunk: Chunk, include_usage: bool) -> str:
    """A chunk ails made. Not ``Chunk``'s own encoding: it omits default
    values, and a chunk on the wire always carries ``object`` and ``choices``
    (``[]`` on the usage chunk)."""
    usage = chunk.usage
    if usage is not None and not include_usage:
        if not chunk.choices:
            return ""
        usage = None
    out: dict[str, Any] = {
        "id": chunk.id,
        "object": "chat.completion.chunk",
        "created": chunk.created,
        "model": chunk.model,
        "choices": chunk.choices,
    }
    if chunk.system_fingerprint is not None:
        out["system_fingerprint"] = chunk.system_fingerprint
    if usage is not None:
        out["usage"] = usage
    return _safe(_encode(out).decode())


def completion_json(completion: Completion) -> bytes:
    """A completion ails made, with every field a client expects on the wire
    (``Completion``'s own encoding omits defaults such as ``object``)."""
    out: dict[str, Any] = {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": completion.choices,
    }
    if completion.usage is not None:
        out["usage"] = completion.usage
    if completion.system_fingerprint is not None:
        out["system_fingerprint"] = completion.system_fingerprint
    return _encode(out)


__all__ = ["completion_json", "frame_batch"]
