"""``ails --schema X``: the answer as JSON that validates against a schema, as llm does.

X is read the way llm reads it: text starting with ``{`` is a JSON schema, the
path of an existing file is a file holding one, and anything else is llm's
concise form, fields separated by commas (or by newlines when there are any),
each ``name [type][: description]`` with the types ``str`` (the default),
``int``, ``float`` and ``bool``::

    ails --schema 'name, age int, bio: one line about them' "Invent a person"

gives ``{"type": "object", "properties": {...}, "required": [all names]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def load_schema(value: str) -> dict[str, Any]:
    """The schema ``--schema`` names; a ``click.BadParameter`` (exit 2) when it is wrong."""
    text = value.strip()
    if text.startswith("{"):
        return _json(text, "the --schema value")
    path = Path(value).expanduser()
    if path.is_file():
        try:
            return _json(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc}", param_hint="'--schema'"
            ) from None
    return concise_schema(value)


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not JSON: {exc}", param_hint="'--schema'") from None
    if not isinstance(schema, dict):
        raise click.BadParameter(f"{what} must be a JSON object", param_hint="'--schema'")
    return schema


def concise_schema(spec: str) -> dict[str, Any]:
    """llm's concise form: ``name, age int, bio: one line`` -> a JSON schema."""
    separator = "\n" if "\n" in spec else ","
    properties: dict[str, Any] = {}
    for raw in spec.split(separator):
        field = raw.strip()
        if not field:
            continue
        head, colon, description = field.partition(":")
        words = head.split()
        if not words:
            raise click.BadParameter(f"{field!r} has no field name", param_hint="'--schema'")
        if len(words) > 2 or (len(words) == 2 and words[1] not in _TYPES):
            raise click.BadParameter(
                f"{head.strip()!r}: expected 'name' or 'name TYPE' with TYPE one of "
                f"{', '.join(_TYPES)}",
                param_hint="'--schema'",
            )
        prop: dict[str, Any] = {"type": _TYPES[words[1]] if len(words) == 2 else "string"}
        if colon and description.strip():
            prop["description"] = description.strip()
        properties[words[0]] = prop
    if not properties:
        raise click.BadParameter("the schema names no field", param_hint="'--schema'")
    return {"type": "object", "properties": properties, "required": list(properties)}


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def check_provider_takes_it(model: str) -> None:
    """Exit 2 before sending anything when the model's provider has no response_format."""
    from ails.providers import registry

    cls = registry.provider_class(model.partition("/")[0])
    names, takes_extra = cls.accepted_params()
    if "response_format" not in names and not takes_extra:
        raise click.UsageError(
            f"--schema needs a provider that takes response_format; {cls.name} does not ({model})"
        )


__all__ = ["check_provider_takes_it", "concise_schema", "load_schema", "response_format"]
