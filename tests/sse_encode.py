"""A general SSE event encoder, for tests of the decoder: every field, any
text. (The gateway's own framing is ails.wire, which writes only ``data:``.)"""

from __future__ import annotations


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines: that also splits on VT, FF, U+2028 and others, which
    # SSE treats as ordinary characters.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _check_field(name: str, value: str) -> None:
    if "\0" in value or "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} must not contain NUL, CR or LF: {value!r}")


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One event, ready for the wire. Each line of ``data`` becomes its own
    ``data:`` line, so a decoder gets it back with line ends turned into LF."""
    parts: list[str] = []
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_field("id", id)
        parts.append(f"id: {id}\n")
    if retry is not None:
        if retry < 0:
            raise ValueError(f"SSE retry must be a non-negative integer: {retry!r}")
        parts.append(f"retry: {int(retry)}\n")
    for line in _split_lines(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    """A comment block, e.g. a keep-alive; decoders dispatch nothing for it."""
    return "".join(f": {line}\n" for line in _split_lines(text)).encode() + b"\n"
