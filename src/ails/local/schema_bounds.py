"""Bounds that no value can meet, found before the runtime sees them.

The runtime compiles ``{"type": "string", "minLength": 5, "maxLength": 1}`` into
a grammar that allows no token at all; the sampler then produces nothing, and
the request held its slot in silence until the idle timeout (120 s by default).
An ``enum`` or ``const`` value that breaks its own node's bounds is the other
way round: the converter emits the listed values alone, so the answer would
carry a value the schema forbids. :mod:`ails.local.schema` calls
:func:`bounds_problem` on every node it walks, after it has checked each
keyword's own form (whole numbers >= 0 for counts, numbers for bounds), and
refuses the schema with the reason given here.
"""

from __future__ import annotations

import math
from typing import Any

_NO_VALUE = object()


def bounds_problem(schema: dict[str, Any]) -> str | None:
    """Why no value (or not every listed value) meets this node's bounds, or None."""
    for low, high, what in (
        ("minLength", "maxLength", "string"),
        ("minItems", "maxItems", "array"),
    ):
        if low in schema and high in schema and schema[low] > schema[high]:
            return f"{low} {schema[low]} > {high} {schema[high]}: no {what} fits"
    lowest, highest = _integer_range(schema)
    if lowest is not None and highest is not None and lowest > highest:
        return f"{_describe(schema)}: no integer lies in that range"
    return _value_problem(schema, lowest, highest)


def _integer_range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The smallest and largest integer the numeric bounds allow (None: unbounded)."""
    lows: list[int] = []
    highs: list[int] = []
    if "minimum" in schema:
        lows.append(math.ceil(schema["minimum"]))
    if "exclusiveMinimum" in schema:
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        highs.append(math.floor(schema["maximum"]))
    if "exclusiveMaximum" in schema:
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _describe(schema: dict[str, Any]) -> str:
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    return ", ".join(f"{k} {schema[k]}" for k in keys if k in schema)


def _value_problem(schema: dict[str, Any], lowest: int | None, highest: int | None) -> str | None:
    const = schema.get("const", _NO_VALUE)
    enum = schema.get("enum")
    if const is not _NO_VALUE and isinstance(enum, list) and not _among(const, enum):
        return f"'const' {const!r} is not among the 'enum' values: no value fits"
    values = [] if const is _NO_VALUE else [const]
    values += enum if isinstance(enum, list) else []
    for value in values:
        broken = _breaks(schema, value, lowest, highest)
        if broken:
            return f"the value {value!r} of 'enum'/'const' breaks {broken}"
    return None


def _among(value: Any, values: list[Any]) -> bool:
    # JSON equality: 1 == 1.0, but true is not 1.
    return any((type(v) is bool) == (type(value) is bool) and v == value for v in values)


def _breaks(schema: dict[str, Any], value: Any, lowest: int | None, highest: int | None) -> str:
    """The bound of ``schema`` that ``value`` breaks, or ''."""
    if isinstance(value, str):
        size, low, high = len(value), "minLength", "maxLength"
    elif isinstance(value, list):
        size, low, high = len(value), "minItems", "maxItems"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if lowest is not None and value < lowest:
            return _describe(schema)
        if highest is not None and value > highest:
            return _describe(schema)
        return ""
    else:
        return ""
    if low in schema and size < schema[low]:
        return f"{low} {schema[low]}"
    if high in schema and size > schema[high]:
        return f"{high} {schema[high]}"
    return ""


__all__ = ["bounds_problem"]
