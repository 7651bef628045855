"""The JSON Schema allow-list of the embedded model: what Pydantic and the openai SDK
emit passes, and every keyword the runtime would skip is a 400 that names it
(docs/local-model.md, "Structured output", has what each one did unchecked)."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Annotated, Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from ails.errors import BadRequest
from ails.local.params import plan_request
from ails.local.pattern import pattern_problem
from ails.local.schema import check_schema
from ails.local.tools import parse_tools


def refused(schema: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        check_schema(schema, param="rf")
    assert info.value.status == 400
    return info.value


# -- JSON Schema allow-list ----------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool = True


class Address(BaseModel):
    street: str = Field(description="street and number", max_length=80)
    zip: str = Field(pattern=r"^[0-9]{5}$")


class Everything(BaseModel):
    """What Pydantic emits for common models."""

    name: str = Field(min_length=1, max_length=20, title="Name")
    age: int | None = None
    color: Color = Color.RED
    mood: Literal["happy", "sad"]
    tags: list[str] = Field(default_factory=list, max_length=4)
    scores: dict[str, int] = {}
    home: Address
    previous: list[Address] = []
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    born: datetime.date
    seen: datetime.datetime
    id: uuid.UUID
    ratio: float = 0.5


def test_pydantic_schemas_pass_the_allow_list() -> None:
    check_schema(Everything.model_json_schema(), param="p")
    # What the SDK's parse() and pydantic_function_tool() send: the strict form.
    check_schema(openai.pydantic_function_tool(Everything)["function"]["parameters"], param="p")


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
        ({"type": "number", "minimum": 1.5}, "minimum"),
        ({"type": "integer", "multipleOf": 3}, "multipleOf"),
        ({"type": "string", "format": "email"}, "email"),
        ({"type": "object", "minProperties": 1}, "minProperties"),
        ({"not": {"type": "string"}}, "not"),
        ({"type": "object", "required": ["a"]}, "'a'"),
        ({"minLength": 3}, "minLength"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
        ({"allOf": [{"type": "object"}, {"type": "object"}]}, "allOf"),
        ({"$ref": "https://example.invalid/s.json"}, "$ref"),
        ({"$ref": "#/$defs/Missing"}, "points at nothing"),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "prefixItems"),
        ({"type": "string", "pattern": "[0-9]+"}, "'^'"),
        ({"type": "string", "enum": ["a", 1]}, "does not match"),
        ({"type": "object", "properties": {"a": True}}, "true/false"),
        ({"type": "strin"}, "strin"),
    ],
)
def test_keywords_the_runtime_does_not_enforce_are_refused(schema: Any, named: str) -> None:
    err = refused({"type": "object", "properties": {"x": schema}})
    assert err.code == "unsupported_schema" and err.param == "rf"
    assert named in err.message and "#/properties/x" in err.message


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("^[0-9]{5}$", True),
        ("^(ab|cd)+x?$", True),
        ("^(?:a|b)[^a-z ]{2,4}\\.$", True),
        ("^a.c$", True),
        ("[0-9]+", False),
        ("^\\d+$", False),
        ("^[\\w]+$", False),
        ("^(?!a)b$", False),
        ("^(a$", False),
        ("^a{x}$", False),
        ("^a^b$", False),
    ],
)
def test_patterns_the_converter_can_express(pattern: str, ok: bool) -> None:
    assert (pattern_problem(pattern) is None) is ok


def test_a_deep_schema_is_refused_not_crashed() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    assert "nested too deeply" in refused(schema).message


# -- bounds no value meets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "string", "minLength": 5, "maxLength": 1}, "minLength 5 > maxLength 1"),
        (
            {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 2},
            "minItems 3 > maxItems 2",
        ),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum 5, maximum 1"),
        ({"type": "integer", "minimum": 5, "exclusiveMaximum": 5}, "exclusiveMaximum 5"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "exclusiveMinimum 1"),
        ({"type": "integer", "exclusiveMinimum": 3, "maximum": 3.0}, "no integer"),
        ({"type": "string", "enum": ["a", "b"], "const": "c"}, "'c' is not among"),
        ({"type": "string", "enum": ["ok", "toolong"], "maxLength": 3}, "'toolong'"),
        ({"type": "integer", "const": 7, "maximum": 5}, "the value 7"),
        ({"type": ["integer", "boolean"], "enum": [1], "const": True}, "not among"),
    ],
)
def test_bounds_that_no_value_meets_are_refused_with_where_and_why(schema: Any, why: str) -> None:
    err = refused({"type": "object", "properties": {"name": schema}})
    assert err.code == "invalid_schema" and err.param == "rf"
    assert why in err.message and "(at #/properties/name)" in err.message
    assert "no value can satisfy" in err.message


def test_a_contradiction_is_found_wherever_the_walk_goes() -> None:
    empty = {"type": "string", "minLength": 2, "maxLength": 0}
    places = {
        "#/items": {"type": "array", "items": empty},
        "#/anyOf/1": {"anyOf": [{"type": "null"}, empty]},
        "#/$defs/Name": {"$defs": {"Name": empty}, "$ref": "#/$defs/Name"},
        "#/additionalProperties": {"type": "object", "additionalProperties": empty},
        "#/properties/a/properties/b": {
            "type": "object",
            "properties": {"a": {"type": "object", "properties": {"b": empty}}},
        },
    }
    for where, schema in places.items():
        assert f"(at {where})" in refused(schema).message, where


@pytest.mark.parametrize("where", ["response_format", "tools"])
def test_the_request_check_refuses_the_example_before_any_generation(where: str) -> None:
    """The local provider's own request check (no model loaded), both ways a schema
    constrains generation."""
    empty = {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 5, "maxLength": 1}},
    }
    params: dict[str, Any] = (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": empty}}}
        if where == "response_format"
        else {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": empty}}],
            "tool_choice": "required",
        }
    )
    with pytest.raises(BadRequest) as info:
        plan_request([{"role": "user", "content": "hi"}], params, slots=2)
    assert info.value.status == 400 and info.value.code == "invalid_schema"
    param = (
        "response_format.json_schema.schema"
        if where == "response_format"
        else "tools[0].function.parameters"
    )
    assert info.value.param == param
    assert f"{param}: minLength 5 > maxLength 1" in info.value.message
    assert "(at #/properties/name)" in info.value.message


def test_the_unsatisfiable_example_is_refused_for_tool_parameters_too() -> None:
    params = {
        "type": "object",
        "properties": {"s": {"type": "string", "minLength": 5, "maxLength": 1}},
    }
    tools = [{"type": "function", "function": {"name": "f", "parameters": params}}]
    with pytest.raises(BadRequest) as info:
        parse_tools(tools)
    assert info.value.code == "invalid_schema"
    assert info.value.param == "tools[0].function.parameters"
    assert "minLength 5 > maxLength 1" in info.value.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 3, "maxLength": 3},
        {"type": "string", "maxLength": 0},
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        {"type": "integer", "minimum": 4, "maximum": 4},
        {"type": "integer", "minimum": 4, "exclusiveMaximum": 5},
        {"type": "integer", "exclusiveMinimum": -1, "exclusiveMaximum": 1},
        {"type": "string", "enum": ["ab", "cd"], "const": "cd", "minLength": 2},
        {"type": "number", "enum": [1.0, 2], "const": 1},
        {"type": "integer", "enum": [1, 2, 3], "minimum": 1, "maximum": 3},
    ],
)
def test_edge_bounds_that_some_value_meets_still_pass(schema: Any) -> None:
    check_schema({"type": "object", "properties": {"x": schema}}, param="p")


@pytest.mark.parametrize(("pattern", "why"), [("^a{3,1}$", "nothing"), ("^[]a$", "empty")])
def test_patterns_that_match_nothing_are_refused(pattern: str, why: str) -> None:
    assert why in (pattern_problem(pattern) or "")
