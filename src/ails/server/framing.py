"""Stream framing: chunks as ``data:`` lines, one write per batch.

Every ``data:`` line holds one single-line JSON object in which the text
``data: `` never occurs (its colon is escaped as ``\\u003a``, which decodes the
same), so the seed's naive client, which deletes every ``data: `` from a line
before parsing it, reads the stream correctly too. From an HTTP upstream each
chunk's own JSON text is forwarded (fields ails does not model survive); other
backends' chunks are encoded here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ails.types import Chunk

_encode = msgspec.json.Encoder().encode


def _safe(text: str) -> str:
    """One line, and no ``data: `` inside (see the module docstring). Newlines in
    valid JSON only occur between tokens, where a space means the same."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if "data: " in text:
        text = text.replace("data: ", "data\\u003a ")
    return text


def frame_raw(raw: list[str], batch: list[Chunk], include_usage: bool) -> bytes:
    """The upstream's own chunk texts of one read, as one write."""
    parts = []
    for text, chunk in zip(raw, batch, strict=True):
        if not include_usage and chunk.usage is not None and not chunk.choices:
            continue  # a usage-only chunk the client did not ask for
        parts.append(_safe(text))
    if not parts:
        return b""
    return ("data: " + "\n\ndata: ".join(parts) + "\n\n").encode()


def frame_chunks(batch: list[Chunk], include_usage: bool, model: str | None = None) -> bytes:
    """Chunks ails made (the embedded model), encoded, as one write.

    Not ``Chunk``'s own encoding: it omits default values, and a chunk on the
    wire always carries ``object`` and ``choices`` (``[]`` on the usage chunk).
    ``model``, when given, is the name the client asked for (an alias, say).
    """
    parts = []
    for chunk in batch:
        usage = chunk.usage
        if usage is not None and not include_usage:
            if not chunk.choices:
                continue
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
        data = _encode(out)
        if b"data: " in data:
            data = data.replace(b"data: ", b"data\\u003a ")
        parts.append(data)
    if not parts:
        return b""
    return b"data: " + b"\n\ndata: ".join(parts) + b"\n\n"


__all__ = ["frame_chunks", "frame_raw"]
