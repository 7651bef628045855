"""A batch of chat chunks read as plain frames, decoded on first use.

A gateway forwards an OpenAI-style upstream's frames as read and looks only
at :attr:`Batch.meta` (finish reasons, usage, an in-band error), so it never
pays for the chunks; a library user who iterates the batch gets them
decoded then, and a chunk whose JSON is well-formed but not a chunk (a
field of the wrong type) raises the same typed error there as it would have
on the read: after the chunks before it, at the place it would have come.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from ails.errors import ProtocolError
from ails.providers.base import Batch
from ails.types import Chunk, ChunkMeta

_decode_one = msgspec.json.Decoder(Chunk, strict=False).decode
_decode_all = msgspec.json.Decoder(list[Chunk], strict=False).decode


class LazyBatch(Batch):
    """The chunks of ``array`` (their JSON texts as one JSON array), of which
    ``meta`` is decoded already; ``first`` is the first chunk's number in the
    stream and ``provider`` its name, for the error.

    Until the chunks are decoded, the list holds their metas: ``len()`` and
    truth stay the list's own (no Python call per ``if batch``, which the
    stream and the gateway ask on every read), and every way to read an item
    goes through a method below that decodes first. Code that reads the
    list's storage in C without calling them (``json.dumps``) sees metas.
    """

    # ``meta`` a slot, not Batch's property: the gateway reads it per read.
    __slots__ = ("_array", "_error", "_first", "_provider", "meta")

    def __init__(
        self, meta: list[ChunkMeta], frames: bytes, array: bytes, first: int, provider: str
    ) -> None:
        # One frame, not Batch.__init__ through super(): this runs for every read.
        list.__init__(self, meta)  # type: ignore[misc]
        self._raw = None
        self.frames = frames
        self.meta: Sequence[Chunk | ChunkMeta] = meta
        self._array: bytes | None = array
        self._error: ProtocolError | None = None
        self._first = first
        self._provider = provider

    def _fill(self) -> None:
        array, self._array = self._array, None
        assert array is not None
        try:
            chunks = _decode_all(array)
        except msgspec.DecodeError:
            chunks = []
            # Chunk by chunk, to find the one at fault (the syntax is known good).
            for i, text in enumerate(self.raw):
                assert text is not None
                try:
                    chunks.append(_decode_one(text))
                except msgspec.DecodeError as exc:
                    self._error = ProtocolError(
                        f"chunk {self._first + i} is not valid chunk JSON: {exc}",
                        provider=self._provider,
                        code="invalid_chunk",
                    )
                    break
        # The chunks that decoded (all but on an error) replace the metas.
        list.__setitem__(self, slice(None), chunks)

    def _chunks(self) -> None:
        """Decode on first use; raise the error when a chunk is not one."""
        if self._array is not None:
            self._fill()
        if self._error is not None:
            raise self._error

    def __iter__(self) -> Iterator[Chunk]:
        if self._array is not None:
            self._fill()
        if self._error is None:
            return list.__iter__(self)
        return self._then_raise(self._error)

    def _then_raise(self, error: ProtocolError) -> Iterator[Chunk]:
        yield from list.__iter__(self)
        raise error

    def __getitem__(self, index: Any) -> Any:
        if self._array is not None:
            self._fill()
        if self._error is not None and not (type(index) is int and 0 <= index < list.__len__(self)):
            raise self._error
        return list.__getitem__(self, index)

    def __radd__(self, other: Any) -> Any:
        # Tried before list.__add__ of a list on the left, which would read
        # this list's storage as it is.
        if not isinstance(other, list):
            return NotImplemented
        return other + list(self)

    def __repr__(self) -> str:
        return (
            f"LazyBatch({len(self)} chunks, {'decoded' if self._array is None else 'not decoded'})"
        )


def _decoding(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def decoded_first(self: LazyBatch, *args: Any) -> Any:
        self._chunks()
        for arg in args:  # list's own code reads another list's storage
            if isinstance(arg, LazyBatch):
                arg._chunks()
        return method(self, *args)

    decoded_first.__name__ = name
    return decoded_first


# Every other way to read or change a list sees the chunks decoded (the
# list's own storage is empty until then).
for _name in (
    "__reversed__", "__contains__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__add__", "__mul__", "__rmul__", "__iadd__", "__imul__", "__setitem__", "__delitem__",
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "index", "count",
    "copy",
):  # fmt: skip
    setattr(LazyBatch, _name, _decoding(_name))
