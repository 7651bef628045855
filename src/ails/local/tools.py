"""Tool calls that always parse: the call is generated under a JSON schema.

The bundled 0.5B model does not keep to its chat template's ``<tool_call>``
convention: asked for a call it writes the JSON in a code block, and with the
runtime's own grammar for ``required`` it looped on blank lines until
``max_tokens``. So ails builds the constraint itself: the answer must match
``{"name": {"const": FN}, "arguments": PARAMETERS}`` (``anyOf`` over the tools
it may call), which the runtime enforces token by token, and the JSON that comes
out is turned into OpenAI ``tool_calls``. The tools are still rendered into the
prompt by the model's own chat template, and so are earlier calls and their
``role: "tool"`` results.

Pure functions and values only; the streams that use them are in
:mod:`ails.local.tool_stream`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from ails.errors import BadRequest
from ails.local.schema import check_schema
from ails.types import Chunk, ChunkChoice, Delta

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
#: What a function without ``parameters`` takes: nothing (OpenAI's reading).
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolPlan:
    """What the answer may do with the tools.

    ``mode`` is ``"required"`` (a call, to one of ``callable``: ``required``, a
    named function, or ``allowed_tools`` in required mode) or ``"auto"`` (the
    model's first tokens decide). ``response_schema`` is the ``response_format``
    an answer without a call must follow, if any.
    """

    tools: tuple[Tool, ...]
    callable: tuple[Tool, ...]
    mode: str
    response_schema: dict[str, Any] | None = None


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, status=400, provider="local", code=code, param=param)


def parse_tools(tools: Any) -> tuple[Tool, ...]:
    """OpenAI ``tools``: function tools only, each schema checked (a 400 names the fault)."""
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array of function tools", "tools", "invalid_type")
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"'{where}' must be an object", where, "invalid_type")
        if tool.get("type", "function") != "function":
            raise _bad(
                f"'{where}.type' is {tool.get('type')!r}: the embedded model calls only "
                "function tools",
                f"{where}.type",
                "unsupported_value",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise _bad(f"'{where}.function' must be an object", f"{where}.function", "invalid_type")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad(
                f"'{where}.function.name' must be 1-64 letters, digits, '_' or '-'",
                f"{where}.function.name",
            )
        if any(t.name == name for t in out):
            raise _bad(f"two tools are named {name!r}", f"{where}.function.name")
        parameters = fn.get("parameters")
        if parameters is None:
            parameters = _NO_PARAMETERS
        check_schema(parameters, param=f"{where}.function.parameters")
        out.append(Tool(name, parameters))
    return tuple(out)


def plan_tools(
    tools: tuple[Tool, ...], choice: Any, response_schema: dict[str, Any] | None
) -> ToolPlan | None:
    """The plan for ``tool_choice``; None when no call may be made (``none``, no tools)."""
    if choice is None or choice == "auto":
        return ToolPlan(tools, tools, "auto", response_schema) if tools else None
    if choice == "none":
        return None
    if choice == "required":
        if not tools:
            raise _bad("tool_choice 'required' needs 'tools'", "tool_choice")
        return ToolPlan(tools, tools, "required")
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = _function_name(choice)
        return ToolPlan(tools, (_find(tools, name, "tool_choice.function.name"),), "required")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if not isinstance(allowed, dict) or not isinstance(allowed.get("tools"), list):
            raise _bad("'tool_choice.allowed_tools.tools' must be an array", "tool_choice")
        mode = allowed.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise _bad("'tool_choice.allowed_tools.mode' must be auto or required", "tool_choice")
        names = [_function_name(t) for t in allowed["tools"]]
        chosen = tuple(_find(tools, n, "tool_choice.allowed_tools.tools") for n in names)
        if not chosen:
            raise _bad("'tool_choice.allowed_tools.tools' is empty", "tool_choice")
        return ToolPlan(tools, chosen, mode, response_schema if mode == "auto" else None)
    raise _bad(
        '\'tool_choice\' must be none, auto, required or {"type": "function", '
        '"function": {"name": ...}}',
        "tool_choice",
    )


def _function_name(value: Any) -> Any:
    fn = value.get("function") if isinstance(value, dict) else None
    return fn.get("name") if isinstance(fn, dict) else None


def _find(tools: tuple[Tool, ...], name: Any, param: str) -> Tool:
    for tool in tools:
        if tool.name == name:
            return tool
    raise _bad(f"tool_choice names {name!r}, which is not among 'tools'", param)


# -- the constraint ----------------------------------------------------------------------


def call_schema(plan: ToolPlan, *, with_response: bool = False) -> dict[str, Any]:
    """One schema for a call to any of ``plan.callable`` (and, with ``with_response``,
    for the plain answer instead).

    Each schema goes under ``$defs`` of the new root, with its own ``#/…``
    references rewritten to point there, so ``$defs`` of different tools cannot
    collide and Pydantic's schemas keep working.
    """
    defs: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for i, tool in enumerate(plan.callable):
        key = f"tool{i}"
        defs[key] = _rebase(tool.parameters, f"#/$defs/{key}")
        branches.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool.name},
                    "arguments": {"$ref": f"#/$defs/{key}"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if with_response and plan.response_schema is not None:
        defs["response"] = _rebase(plan.response_schema, "#/$defs/response")
        branches.append({"$ref": "#/$defs/response"})
    root: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    return {"$defs": defs, **root}


#: Keywords whose values are data, not schemas: nothing in them is a reference.
_VALUES = frozenset({"enum", "const", "default", "examples"})


def _rebase(schema: Any, prefix: str) -> Any:
    if isinstance(schema, dict):
        return {
            k: prefix + v[1:]
            if k == "$ref" and isinstance(v, str)
            else v
            if k in _VALUES
            else _rebase(v, prefix)
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(v, prefix) for v in schema]
    return schema


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The runtime's ``response_format`` for a schema."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


# -- reading the answer --------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def read_call(text: str, plan: ToolPlan) -> Call | None:
    """The call in a complete constrained answer, or None when it is the plain answer."""
    try:
        value = _decode(text)
    except msgspec.DecodeError:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"name", "arguments"}
        and any(t.name == value["name"] for t in plan.callable)
        and isinstance(value["arguments"], dict)
    ):
        return Call(value["name"], _encode(value["arguments"]).decode())
    return None


_PARTIAL = re.compile(r'^\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]+)"\s*,\s*"arguments"\s*:\s*')


def read_partial_call(text: str) -> Call | None:
    """What a call cut by ``max_tokens`` had written: its name and the start of its
    arguments (not valid JSON: the answer ends with ``finish_reason: "length"``)."""
    match = _PARTIAL.match(text)
    return Call(match.group(1), text[match.end() :]) if match else None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def call_chunks(like: Chunk, call: Call, *, index: int, finish_reason: str) -> list[Chunk]:
    """A call as OpenAI streams it: id, type and name first, then the arguments,
    then the finish; each ``tool_calls`` entry carries its ``index`` (the openai
    SDK's stream helper needs it)."""
    head = {
        "index": 0,
        "id": new_call_id(),
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    body = {"index": 0, "function": {"arguments": call.arguments}}
    return [
        _chunk(like, index, Delta(tool_calls=[head])),
        _chunk(like, index, Delta(tool_calls=[body])),
        _chunk(like, index, Delta(), finish_reason),
    ]


def _chunk(like: Chunk, index: int, delta: Delta, finish_reason: str | None = None) -> Chunk:
    return Chunk(
        id=like.id,
        created=like.created,
        model=like.model,
        choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)],
        system_fingerprint=like.system_fingerprint,
    )


# -- "auto": does the answer start as a call? -------------------------------------------------

_OPENERS = ("<tool_call>", "```json", "```")
_KEY = '"name"'
#: Past this many characters without a decision, the answer is text.
MAX_UNDECIDED = 160


def starts_as_call(text: str) -> bool | None:
    """Whether an answer beginning with ``text`` is the model starting a call: True,
    False, or None while the text so far could go either way.

    A call is ``{"name"`` after optional white space, a ``<tool_call>`` tag (the
    template's convention) or a code fence (what the bundled model writes); a
    fence for another language, or an object with another first key, is text.
    """
    decision = _starts_as_call(text.lstrip())
    if decision is None and len(text) >= MAX_UNDECIDED:
        return False
    return decision


def _starts_as_call(s: str) -> bool | None:
    for opener in _OPENERS:
        if s.startswith(opener):
            s = s[len(opener) :].lstrip()
            break
        if opener.startswith(s):  # also the empty text
            return None
    if not s:
        return None
    if s[0] != "{":
        return False
    rest = s[1:].lstrip()
    if rest.startswith(_KEY):
        return True
    return None if _KEY.startswith(rest) else False


__all__ = [
    "Call",
    "Tool",
    "ToolPlan",
    "call_chunks",
    "call_schema",
    "json_schema_format",
    "parse_tools",
    "plan_tools",
    "read_call",
    "read_partial_call",
    "starts_as_call",
]
