"""The probe of a whole JSON answer: just enough of it to tell an answer from
an error, never the payload itself (the client gets the bytes anyway)."""

from __future__ import annotations

from typing import Any

import msgspec

from ails.errors import ProtocolError
from ails.types import Usage

#: A field the answer did not have.
_ABSENT = msgspec.Raw(b"")


class _Probe(msgspec.Struct):
    """Just enough of an answer to tell it from an error: ``choices`` of a
    completion, ``data`` of an embeddings list. Those two are kept as their
    JSON text, checked to be arrays but never decoded: the client gets the
    bytes anyway, and an embeddings list can be large."""

    error: Any = None
    choices: msgspec.Raw = _ABSENT
    data: msgspec.Raw = _ABSENT
    usage: msgspec.Raw = _ABSENT

    def read_usage(self) -> Usage | None:
        """``usage``, or ``None`` when it is missing or not a usage object
        (the answer is passed on all the same)."""
        if not self.usage:
            return None
        try:
            return _usage_decoder.decode(self.usage)
        except msgspec.DecodeError:
            return None

    @property
    def has_choices(self) -> bool:
        """``choices`` is a JSON array."""
        return _is_array(self.choices)

    @property
    def has_data(self) -> bool:
        """``data`` is a JSON array."""
        return _is_array(self.data)


def _is_array(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and memoryview(raw)[0] == 0x5B  # "["


_probe = msgspec.json.Decoder(_Probe).decode
_usage_decoder: msgspec.json.Decoder[Usage | None] = msgspec.json.Decoder(Usage | None)


def _not_a_completion(provider: str, why: str, kind: str = "chat.completion") -> ProtocolError:
    return ProtocolError(
        f"answer is not a {kind} JSON object: {why}",
        provider=provider,
        code="invalid_completion",
    )
