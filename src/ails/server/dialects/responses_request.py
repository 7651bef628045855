"""OpenAI's Responses API, request side: a ``POST /v1/responses`` body into an
OpenAI chat request. Pure: the previous turns of ``previous_response_id``
are looked up by the route and handed in.

What clients send, and why it is read this way:

* Codex sends ``input`` items with role ``developer``, ``store: false``,
  ``include`` and ``reasoning``; the Agents SDK sends message items with no
  ``type``. Consecutive ``function_call`` items are one assistant turn.
* Hosted tools (``web_search``, ``file_search``, ``local_shell``, …) run on
  OpenAI's side; Codex always sends some, so they are left out and named
  (refused only when ``tool_choice`` forces one). A ``custom`` tool becomes a
  function with one string argument ``input``; a ``namespace`` groups
  functions, flattened here as ``NAMESPACE__NAME`` and split again on the way
  out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ails.server.dialects.common import dump_json, optional, require
from ails.server.errors import GatewayError

#: Separates a namespace from a function name in the flattened tool list.
NAMESPACE_SEP = "__"


@dataclass
class ToolNames:
    """How the backend's function names map back to the Responses items."""

    custom: set[str] = field(default_factory=set)
    #: flattened name → (namespace, name)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class ResponsesRequest:
    """A Responses request translated, with what the answer must echo."""

    chat: dict[str, Any]
    #: The conversation as chat messages, stored for a later ``previous_response_id``.
    messages: list[dict[str, Any]]
    dropped_tools: list[str]
    tool_names: ToolNames
    #: Request fields the response object repeats (instructions, metadata, tools, …).
    echo: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.chat["model"])

    @property
    def stream(self) -> bool:
        return bool(self.chat.get("stream"))


def request_to_chat(
    body: dict[str, Any], history: list[dict[str, Any]] | None = None
) -> ResponsesRequest:
    """The chat request that means the same as ``body``, after ``history``
    (the messages of the response it continues); a 400 naming the field for
    what cannot be translated."""
    model = require(body, "model", str, "a string")
    messages = list(history or [])
    instructions = optional(body, "instructions", str, "a string")
    # Instructions are not carried over from a previous response (as OpenAI does).
    if instructions:
        messages = [m for m in messages if m.get("role") != "system"]
        messages.insert(0, {"role": "system", "content": instructions})
    messages += input_messages(body.get("input"))
    if not any(m.get("role") != "system" for m in messages):
        raise GatewayError(400, "input: at least one input item is required", param="input")
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if optional(body, "stream", bool, "true or false"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    max_tokens = optional(body, "max_output_tokens", int, "an integer")
    if max_tokens is not None:
        if max_tokens < 1:
            raise GatewayError(400, "max_output_tokens: at least 1", param="max_output_tokens")
        chat["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        value = optional(body, name, (int, float), "a number")
        if value is not None:
            chat[name] = value
    parallel = optional(body, "parallel_tool_calls", bool, "true or false")
    names = ToolNames()
    tools, dropped = _tools(body.get("tools"), names)
    if tools:
        chat["tools"] = tools
        if parallel is False:
            chat["parallel_tool_calls"] = False
    _tool_choice(body.get("tool_choice"), chat, tools)
    _text_format(body.get("text"), chat)
    echo = {
        "instructions": instructions,
        "metadata": optional(body, "metadata", dict, "an object") or {},
        "max_output_tokens": max_tokens,
        "parallel_tool_calls": parallel is not False,
        "temperature": chat.get("temperature"),
        "top_p": chat.get("top_p"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store") is not False,
        "user": body.get("user"),
    }
    return ResponsesRequest(chat, messages, dropped, names, echo)


def input_messages(items: Any) -> list[dict[str, Any]]:
    """``input`` (a string, or a list of items) as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise GatewayError(400, "input: a string or a list of items", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where}: must be an object", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            out.append(_message(item, where))
        elif kind in ("function_call", "custom_tool_call"):
            _append_call(out, item, kind)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output", "")
            content = output if isinstance(output, str) else _parts_text(output, where)
            out.append(
                {"role": "tool", "tool_call_id": str(item.get("call_id")), "content": content}
            )
        elif kind in ("reasoning", "web_search_call", "file_search_call", "compaction"):
            continue  # reasoning and hosted-tool records mean nothing to the backend
        else:
            raise GatewayError(
                400, f"{where}: input items of type {kind!r} are not supported", param=where
            )
    return out


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise GatewayError(400, f"{where}.role: user, assistant, system or developer", param=where)
    # Not every backend knows "developer"; "system" means the same to all of them.
    role = "system" if role == "developer" else role
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content: a string or a list of parts", param=where)
    parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    if kind == "input_file" and isinstance(part.get("file_data"), str):
        file = {"file_data": part["file_data"], "filename": part.get("filename") or "file"}
        return {"type": "file", "file": file}
    raise GatewayError(
        400, f"{where}: content parts of type {kind!r} are not supported", param=where
    )


def _parts_text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise GatewayError(400, f"{where}.output: a string or a list of parts", param=where)
    return "".join(_part(p, where).get("text", "") for p in parts)


def _append_call(out: list[dict[str, Any]], item: dict[str, Any], kind: str) -> None:
    """A call joins the assistant turn just before it, so that consecutive
    calls (and the text before them) are one assistant message."""
    name = str(item.get("name", ""))
    if item.get("namespace"):
        name = f"{item['namespace']}{NAMESPACE_SEP}{name}"
    if kind == "custom_tool_call":
        arguments = dump_json({"input": item.get("input", "")})
    else:
        arguments = str(item.get("arguments", ""))
    call = {
        "id": str(item.get("call_id") or item.get("id")),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    last = out[-1] if out else None
    if (
        last is not None
        and last.get("role") == "assistant"
        and isinstance(last.get("content"), (str, type(None)))
    ):
        last.setdefault("tool_calls", []).append(call)
    else:
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})


_CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
    "additionalProperties": False,
}


def _tools(tools: Any, names: ToolNames) -> tuple[list[dict[str, Any]], list[str]]:
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise GatewayError(400, "tools: must be a list", param="tools")
    out: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise GatewayError(400, f"tools[{i}]: must be an object", param=f"tools[{i}]")
        if tool.get("type") == "namespace":
            space, inners = tool.get("name"), tool.get("tools") or []
            if not isinstance(space, str) or not space or not isinstance(inners, list):
                raise GatewayError(
                    400, f"tools[{i}]: a namespace needs a name and a list of tools",
                    param=f"tools[{i}]",
                )  # fmt: skip
            for inner in inners:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    flat = f"{space}{NAMESPACE_SEP}{inner['name']}"
                    names.namespaced[flat] = (space, inner["name"])
                    out.append(_function(inner, flat, names, f"tools[{i}]"))
        elif tool.get("type") in ("function", "custom"):
            out.append(_function(tool, tool.get("name"), names, f"tools[{i}]"))
        else:
            dropped.append(str(tool.get("name") or tool.get("type")))
    return out, dropped


def _function(tool: dict[str, Any], name: Any, names: ToolNames, where: str) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise GatewayError(400, f"{where}: a tool needs a name", param=where)
    function: dict[str, Any] = {"name": name}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if tool.get("type") == "custom":
        names.custom.add(name)
        function["parameters"] = _CUSTOM_PARAMETERS
    else:
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, chat: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    if choice is None:
        return
    known = {t["function"]["name"] for t in tools}
    if choice in ("auto", "none", "required"):
        if tools:
            chat["tool_choice"] = choice
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str) or name not in known:
            raise GatewayError(400, f"tool_choice: no tool named {name!r}", param="tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind == "allowed_tools":
        listed = choice.get("tools") or []
        if not isinstance(listed, list):
            raise GatewayError(400, "tool_choice.tools: a list of tools", param="tool_choice")
        allowed = {
            t.get("name") for t in listed if isinstance(t, dict) and type(t.get("name")) is str
        }
        chat["tools"] = [t for t in tools if t["function"]["name"] in allowed]
        chat["tool_choice"] = "required" if choice.get("mode") == "required" else "auto"
    elif kind is not None:
        raise GatewayError(
            400, f"tool_choice: {kind!r} is a hosted tool this gateway cannot run",
            param="tool_choice",
        )  # fmt: skip
    else:
        raise GatewayError(400, "tool_choice: auto, none, required or a tool", param="tool_choice")


def _text_format(text: Any, chat: dict[str, Any]) -> None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return
    if fmt["type"] == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        schema.setdefault("name", "output")
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise GatewayError(400, "text.format: text, json_object or json_schema", param="text")


__all__ = ["NAMESPACE_SEP", "ResponsesRequest", "ToolNames", "input_messages", "request_to_chat"]
