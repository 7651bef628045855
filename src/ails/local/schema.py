"""JSON Schema for constrained decoding: only keywords the runtime really enforces.

The runtime turns a schema into a grammar that the sampler cannot leave, so an
answer that ends normally is valid JSON. But its converter skips keywords it
does not know without a word (``uniqueItems``, ``multipleOf``, bounds on a
``number``, formats such as ``email``…), which gives a grammar that accepts
more than the schema: the answer parses but may not validate. So every schema
is checked here against a written allow-list before it reaches the runtime,
and anything else is a 400 that names the keyword and where it is. Being
stricter than the schema is fine (the answer still validates); being looser is
not.

Each rule below was checked against the pinned runtime with prompts that invite
a violation (docs/local-model.md, "Structured output"):

- ``type`` (a name or a list, so nullable types), ``enum``, ``const``;
- ``properties``, ``required`` (each name must be among ``properties``: the
  converter ignores a required name it has no property for),
  ``additionalProperties`` (true, false or a schema);
- ``items`` (one schema), ``minItems``, ``maxItems`` beside ``"type": "array"``;
- ``minLength``, ``maxLength`` beside ``"type": "string"``; ``pattern``
  anchored with ``^…$`` using literals, ``.``, classes, groups, ``|`` and
  quantifiers; ``format`` ``date``, ``time``, ``date-time``, ``uuid``;
- ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum`` with
  whole numbers beside ``"type": "integer"`` (on a ``number`` they are skipped);
- ``anyOf``; ``oneOf`` when a required ``const`` property tells its branches
  apart (Pydantic's discriminated unions); ``allOf`` with one member (what
  Pydantic emits around a ``$ref`` with a description);
- ``$ref`` into the same document (``#/…``), ``$defs``, ``definitions``;
- annotations, which constrain nothing: ``title``, ``description``,
  ``default``, ``examples``, ``$schema``, ``$comment``, ``deprecated``,
  ``readOnly``, ``writeOnly``, ``discriminator``, and OpenAPI's ``nullable``
  (which only widens); ``uniqueItems: false``.

Bounds that no value meets (``minLength`` above ``maxLength``, an integer range
with no integer, a ``const`` outside its ``enum``…) compile into a grammar that
allows no token, which the runtime answers with silence: those are refused too,
as ``invalid_schema`` (:mod:`ails.local.schema_bounds`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ails.errors import BadRequest
from ails.local.pattern import pattern_problem
from ails.local.schema_bounds import bounds_problem

TYPES = frozenset({"string", "integer", "number", "boolean", "null", "object", "array"})
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",
        "nullable",
    }
)
#: The keywords enforced (with the conditions in the module docstring).
ENFORCED = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "uniqueItems",
    }
)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class SchemaRefused(ValueError):
    """A keyword the runtime would not enforce; ``where`` is a JSON pointer."""

    def __init__(self, message: str, where: str, *, unsatisfiable: bool = False) -> None:
        super().__init__(message)
        self.where = where
        #: No value meets the schema (schema_bounds.py), rather than a keyword unenforced.
        self.unsatisfiable = unsatisfiable


def check_schema(schema: Any, *, param: str, provider: str = "local") -> None:
    """Raise :class:`BadRequest` (400, ``param``) unless every keyword is enforced."""
    try:
        _Checker(schema).node(schema, "#")
    except RecursionError:
        refused = SchemaRefused("the schema is nested too deeply", "#")
    except SchemaRefused as exc:
        refused = exc
    else:
        return
    if refused.unsatisfiable:
        # The runtime's grammar would allow no token: refused here, not after an idle timeout.
        raise BadRequest(
            f"{param}: {refused} (at {refused.where}); no value can satisfy the schema",
            status=400,
            provider=provider,
            code="invalid_schema",
            param=param,
        )
    raise BadRequest(
        f"{param}: {refused} (at {refused.where}); the embedded model constrains its answer "
        "only with keywords it can enforce (listed in docs/local-model.md)",
        status=400,
        provider=provider,
        code="unsupported_schema",
        param=param,
    )


class _Checker:
    def __init__(self, root: Any) -> None:
        self.root = root

    def node(self, schema: Any, where: str) -> None:
        if not isinstance(schema, dict):
            kind = "true/false" if isinstance(schema, bool) else type(schema).__name__
            raise SchemaRefused(
                f"a schema must be an object here, not {kind} (true/false is enforced only "
                "as additionalProperties)",
                where,
            )
        for key in schema:
            if key not in ENFORCED and key not in ANNOTATIONS:
                raise SchemaRefused(f"the keyword {key!r} is not enforced", where)
        types = self.types(schema, where)
        self.values(schema, types, where)
        self.objects(schema, where)
        self.arrays(schema, types, where)
        self.strings(schema, types, where)
        self.numbers(schema, types, where)
        bounds = bounds_problem(schema)  # after the keywords' own forms are checked
        if bounds:
            raise SchemaRefused(bounds, where, unsatisfiable=True)
        self.combinations(schema, where)
        if schema.get("uniqueItems", False) is not False:
            raise SchemaRefused("the keyword 'uniqueItems' is not enforced", where)
        for key in ("$defs", "definitions"):
            if key in schema:
                defs = schema[key]
                if not isinstance(defs, dict):
                    raise SchemaRefused(f"{key!r} must be an object", where)
                for name, sub in defs.items():
                    self.node(sub, f"{where}/{key}/{_escape(name)}")
        if "$ref" in schema:
            self.resolve(schema["$ref"], where)

    def types(self, schema: dict[str, Any], where: str) -> frozenset[str] | None:
        if "type" not in schema:
            return None
        raw = schema["type"]
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(t, str) for t in names):
            raise SchemaRefused("'type' must be a type name or a list of them", where)
        unknown = [t for t in names if t not in TYPES]
        if unknown:
            raise SchemaRefused(f"'type' {unknown[0]!r} is not a JSON Schema type", where)
        return frozenset(names)

    def values(self, schema: dict[str, Any], types: frozenset[str] | None, where: str) -> None:
        values: list[Any] = []
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise SchemaRefused("'enum' must be a non-empty list", where)
            values += schema["enum"]
        if "const" in schema:
            values.append(schema["const"])
        if types is not None:  # the converter emits the values alone, whatever the type
            for value in values:
                if _json_type(value) not in types and not (
                    _json_type(value) == "integer" and "number" in types
                ):
                    raise SchemaRefused(
                        f"the value {value!r} of 'enum'/'const' does not match 'type'", where
                    )

    def objects(self, schema: dict[str, Any], where: str) -> None:
        props = schema.get("properties")
        if props is not None:
            if not isinstance(props, dict):
                raise SchemaRefused("'properties' must be an object", where)
            for name, sub in props.items():
                self.node(sub, f"{where}/properties/{_escape(name)}")
        if "required" in schema:
            required = schema["required"]
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise SchemaRefused("'required' must be a list of names", where)
            missing = [r for r in required if r not in (props or {})]
            if missing:
                raise SchemaRefused(
                    f"'required' names {missing[0]!r}, which is not in 'properties' (such a "
                    "name is not enforced)",
                    where,
                )
        extra = schema.get("additionalProperties")
        if extra is not None and not isinstance(extra, bool):
            self.node(extra, f"{where}/additionalProperties")

    def arrays(self, schema: dict[str, Any], types: frozenset[str] | None, where: str) -> None:
        used = [k for k in ("items", "minItems", "maxItems") if k in schema]
        if not used:
            return
        if types is None or "array" not in types:
            raise SchemaRefused(f'{used[0]!r} is enforced only beside "type": "array"', where)
        if "items" in schema:
            if isinstance(schema["items"], list):
                raise SchemaRefused("'items' as a list (a tuple) is not enforced", where)
            self.node(schema["items"], f"{where}/items")
        for key in ("minItems", "maxItems"):
            if key in schema:
                _count(schema, key, where)

    def strings(self, schema: dict[str, Any], types: frozenset[str] | None, where: str) -> None:
        for key in ("minLength", "maxLength"):
            if key in schema:
                if types is None or "string" not in types:
                    raise SchemaRefused(f'{key!r} is enforced only beside "type": "string"', where)
                _count(schema, key, where)
        used = [k for k in ("pattern", "format") if k in schema]
        if used and types is not None and "string" not in types:
            # The converter would make a string of it, whatever the type says.
            raise SchemaRefused(f"{used[0]!r} is enforced only on strings", where)
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise SchemaRefused("'pattern' must be a string", where)
            problem = pattern_problem(pattern)
            if problem:
                raise SchemaRefused(f"the pattern {pattern!r} is not enforced: {problem}", where)
        if "format" in schema and (
            not isinstance(schema["format"], str) or schema["format"] not in FORMATS
        ):
            raise SchemaRefused(
                f"the format {schema['format']!r} is not enforced (only "
                f"{', '.join(sorted(FORMATS))})",
                where,
            )

    def numbers(self, schema: dict[str, Any], types: frozenset[str] | None, where: str) -> None:
        for key in _BOUNDS:
            if key not in schema:
                continue
            if types is None or "integer" not in types or "number" in types:
                raise SchemaRefused(
                    f'{key!r} is enforced only beside "type": "integer" (not on a number)',
                    where,
                )
            value = schema[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SchemaRefused(f"{key!r} must be a number", where)
            if isinstance(value, float) and not value.is_integer():
                raise SchemaRefused(f"{key!r} must be a whole number on an integer", where)

    def combinations(self, schema: dict[str, Any], where: str) -> None:
        for key in ("anyOf", "oneOf", "allOf"):
            if key not in schema:
                continue
            branches = schema[key]
            if not isinstance(branches, list) or not branches:
                raise SchemaRefused(f"{key!r} must be a non-empty list of schemas", where)
            for i, sub in enumerate(branches):
                self.node(sub, f"{where}/{key}/{i}")
        if "allOf" in schema and len(schema["allOf"]) != 1:
            raise SchemaRefused(
                "'allOf' is enforced only with one member (merge the members instead)", where
            )
        if "oneOf" in schema and not self.disjoint(schema["oneOf"], where):
            raise SchemaRefused(
                "'oneOf' is enforced only when a required property with a 'const' value tells "
                "its branches apart (use 'anyOf' otherwise)",
                where,
            )

    def disjoint(self, branches: list[Any], where: str) -> bool:
        """Whether one required property holds a different constant in every branch."""
        resolved = [self.follow(b, where) for b in branches]
        if len(resolved) < 2:
            return True
        for name in _required(resolved[0]):
            seen: list[Any] = []
            for branch in resolved:
                value = _constant(branch, name)
                if value is _NONE or name not in _required(branch) or value in seen:
                    break
                seen.append(value)
            else:
                return True
        return False

    def follow(self, schema: Any, where: str) -> dict[str, Any]:
        for _ in range(32):
            if not isinstance(schema, dict) or "$ref" not in schema:
                break
            schema = self.resolve(schema["$ref"], where)
        return schema if isinstance(schema, dict) else {}

    def resolve(self, ref: Any, where: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaRefused(
                f"'$ref' {ref!r} is not enforced: only references into the same schema "
                "('#/$defs/Name') are",
                where,
            )
        target = self.root
        for part in _pointer(ref):
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise SchemaRefused(f"'$ref' {ref!r} points at nothing", where)
        return target


_NONE = object()


def _required(schema: dict[str, Any]) -> list[Any]:
    required = schema.get("required")
    return required if isinstance(required, list) else []


def _constant(schema: dict[str, Any], name: str) -> Any:
    props = schema.get("properties")
    prop = props.get(name) if isinstance(props, dict) else None
    if not isinstance(prop, dict):
        return _NONE
    if "const" in prop:
        return prop["const"]
    enum = prop.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return enum[0]
    return _NONE


def _count(schema: dict[str, Any], key: str, where: str) -> None:
    value = schema[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaRefused(f"{key!r} must be a whole number >= 0", where)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _pointer(ref: str) -> Iterator[str]:
    for part in ref[2:].split("/"):
        yield part.replace("~1", "/").replace("~0", "~")


__all__ = ["ANNOTATIONS", "ENFORCED", "FORMATS", "check_schema"]
