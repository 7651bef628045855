"""What the dialects share: their event type, ids, the reading of tool-call
arguments and of request fields. Their SSE frames are written by
:func:`ails.wire.named_events`, like every other frame."""

from __future__ import annotations

from random import getrandbits
from typing import Any

import msgspec

from ails.server.errors import GatewayError

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: One event of a dialect's stream: its SSE event name and its JSON payload,
#: as an object, or as compact JSON already written (the streams write their
#: text deltas, one per token, from a template).
DialectEvent = tuple[str, "dict[str, Any] | bytes"]


def encode_json(value: Any) -> bytes:
    """``value`` as compact JSON, for a payload written from a template."""
    return _encode(value)


def json_string(text: str) -> bytes:
    """``text`` as a JSON string, for a payload written by hand."""
    return _encode(text)


def escaped_string(text: str) -> bytes:
    """``text`` as a JSON string, safe inside a ``data:`` line (the escape of
    :func:`ails.wire.named_events`), for a whole frame written by hand: the
    text is the one part of a frame a client controls."""
    data = _encode(text)
    return data.replace(b"data: ", b"data\\u003a ") if b"data: " in data else data


def new_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits, like the ids the real APIs hand out.

    From ``random`` (seeded from the OS at start and again after a fork), not
    ``secrets``: an id names an answer and grants nothing (a stored response
    is checked against its owner's key), and ``os.urandom`` is a system call
    that cost a fifth of a whole non-streamed Responses translation."""
    return f"{prefix}{getrandbits(96):024x}"


def load_arguments(text: str) -> Any:
    """A tool call's JSON arguments as a value; text that is not JSON (a
    backend's broken call) is kept as a string rather than lost."""
    if not text:
        return {}
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return text


def dump_json(value: Any) -> str:
    return _encode(value).decode()


def require(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``body[name]``, which must be present and of ``kind``; else a 400 naming it."""
    if name not in body:
        raise GatewayError(400, f"{name}: field required", param=name)
    value = body[name]
    if type(value) is float and value.is_integer() and int in _tuple(kind):
        # JSON Schema's "integer" is any number without a fraction (1e3, 2.0),
        # as on the chat path: taken as the integer.
        value = body[name] = int(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise GatewayError(400, f"{name}: must be {what}", param=name)
    return value


def optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``body.get(name)``: absent or null is None; another type is a 400."""
    value = body.get(name)
    if value is None:
        return None
    return require(body, name, kind, what)


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
