"""Just enough of the GGUF format to vet a user's model file and read its tokenizer.

llama.cpp falls back to a generic template when a model has none, which makes a
base (non-chat) model answer nonsense instead of failing; reading the header
lets us refuse such a file with a clear message. The header also holds the
tokenizer (vocabulary, merges, chat template) that local/tokenizer.py rebuilds.
Layout (GGUF v2/v3, little endian): ``b"GGUF"``, u32 version, u64 tensor
count, u64 key/value count, then the key/value pairs, each ``string key, u32
type, value``. Only that header is read (through mmap): never the tensors.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

GGUF_MAGIC = b"GGUF"
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"

_STRING = 8
_ARRAY = 9
#: Byte sizes of the fixed-size value types.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: struct formats of the fixed-size value types, for reading their values.
_FORMATS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}

#: What a header value reads as: a number, a bool, a string, or an array of them.
Value = int | float | bool | str | list["Value"]


class _Malformed(Exception):
    pass


def read_magic(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4)


def read_string_value(path: Path, key: str) -> str | None:
    """The string stored under ``key`` in the header, or None when absent.

    Raises ``ValueError`` when the header cannot be read (not GGUF, an old v1
    file, truncated): then nothing can be said about the key.
    """
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            return _find(mm, key.encode())
        except (_Malformed, struct.error, IndexError) as exc:
            raise ValueError(f"unreadable GGUF header in {path}") from exc


def read_fields(path: Path, keys: frozenset[str]) -> dict[str, Value]:
    """The values stored under ``keys`` (those present); the rest of the header is
    skipped. Raises ``ValueError`` when the header cannot be read."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            return _fields(mm, {k.encode(): k for k in keys})
        except (_Malformed, struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable GGUF header in {path}") from exc


def has_chat_template(path: Path) -> bool | None:
    """True or False when the header says; None when it cannot be read."""
    try:
        template = read_string_value(path, CHAT_TEMPLATE_KEY)
    except (OSError, ValueError):
        return None
    return bool(template)


def _find(mm: mmap.mmap, wanted: bytes) -> str | None:
    if mm[:4] != GGUF_MAGIC:
        raise _Malformed("magic")
    (version,) = _U32.unpack_from(mm, 4)
    if version < 2:  # v1 used 32-bit counts; such files predate chat templates
        raise _Malformed("version")
    (kv_count,) = _U64.unpack_from(mm, 16)
    pos = 24
    for _ in range(kv_count):
        key, pos = _string(mm, pos)
        (vtype,) = _U32.unpack_from(mm, pos)
        pos += 4
        if key == wanted:
            if vtype != _STRING:
                return None
            value, _ = _string(mm, pos)
            return value.decode("utf-8", "replace")
        pos = _skip(mm, pos, vtype)
    return None


def _fields(mm: mmap.mmap, wanted: dict[bytes, str]) -> dict[str, Value]:
    if mm[:4] != GGUF_MAGIC:
        raise _Malformed("magic")
    if _U32.unpack_from(mm, 4)[0] < 2:
        raise _Malformed("version")
    (kv_count,) = _U64.unpack_from(mm, 16)
    pos = 24
    found: dict[str, Value] = {}
    for _ in range(kv_count):
        key, pos = _string(mm, pos)
        (vtype,) = _U32.unpack_from(mm, pos)
        pos += 4
        name = wanted.get(key)
        if name is None:
            pos = _skip(mm, pos, vtype)
            continue
        found[name], pos = _value(mm, pos, vtype)
        if len(found) == len(wanted):
            break
    return found


def _value(mm: mmap.mmap, pos: int, vtype: int) -> tuple[Value, int]:
    fmt = _FORMATS.get(vtype)
    if fmt is not None:
        (value,) = struct.unpack_from("<" + fmt, mm, pos)
        return value, pos + _FIXED[vtype]
    if vtype == _STRING:
        raw, pos = _string(mm, pos)
        return raw.decode("utf-8"), pos
    if vtype != _ARRAY:
        raise _Malformed(f"unknown value type {vtype}")
    (etype,) = _U32.unpack_from(mm, pos)
    (count,) = _U64.unpack_from(mm, pos + 4)
    pos += 12
    fmt = _FORMATS.get(etype)
    if fmt is not None:  # one unpack for the whole array (token types, scores)
        end = pos + _FIXED[etype] * count
        if end > len(mm):
            raise _Malformed("array past the end")
        return list(struct.unpack_from(f"<{count}{fmt}", mm, pos)), end
    items: list[Value] = []
    if etype == _STRING:  # the vocabulary, the merges: ~150k each, so kept tight
        unpack = _U64.unpack_from
        size = len(mm)
        for _ in range(count):
            (n,) = unpack(mm, pos)
            start = pos + 8
            pos = start + n
            if pos > size:
                raise _Malformed("string past the end")
            items.append(mm[start:pos].decode("utf-8"))
        return items, pos
    for _ in range(count):
        item, pos = _value(mm, pos, etype)
        items.append(item)
    return items, pos


def _string(mm: mmap.mmap, pos: int) -> tuple[bytes, int]:
    (n,) = _U64.unpack_from(mm, pos)
    end = pos + 8 + n
    if end > len(mm):
        raise _Malformed("string past the end")
    return mm[pos + 8 : end], end


def _skip(mm: mmap.mmap, pos: int, vtype: int) -> int:
    size = _FIXED.get(vtype)
    if size is not None:
        return pos + size
    if vtype == _STRING:
        (n,) = _U64.unpack_from(mm, pos)
        return pos + 8 + int(n)
    if vtype == _ARRAY:
        (etype,) = _U32.unpack_from(mm, pos)
        (count,) = _U64.unpack_from(mm, pos + 4)
        pos += 12
        size = _FIXED.get(etype)
        if size is not None:
            return pos + size * int(count)
        # Strings (the vocabulary, the merges) have their own lengths: walk them.
        unpack = _U64.unpack_from
        for _ in range(count):
            if etype == _STRING:
                pos += 8 + unpack(mm, pos)[0]
            else:
                pos = _skip(mm, pos, etype)
            if pos > len(mm):
                raise _Malformed("array past the end")
        return int(pos)
    raise _Malformed(f"unknown value type {vtype}")
