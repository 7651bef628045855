"""Anthropic's Messages API, request side: a ``POST /v1/messages`` body into
an OpenAI chat request. Pure: no I/O.

What clients send, and why it is read this way:

* Claude Code sends fields no backend here can honour but that do not change
  the answer (``thinking``, ``context_management``, ``cache_control`` marks,
  ``defer_loading`` on tools): they are accepted and ignored, as are unknown
  top-level fields, so a newer client keeps working.
* Server tools (``web_search_…``, ``bash_…``, ``text_editor_…``, ``computer_…``)
  run on Anthropic's side; a backend here cannot run them, so they are left out
  and named, and refused only when ``tool_choice`` forces one.
"""

from __future__ import annotations

from typing import Any

from ails.server.dialects.common import dump_json, new_id, optional, require
from ails.server.errors import GatewayError


class MessagesRequest:
    """A Messages request translated: the chat body, and what was left out."""

    __slots__ = ("chat", "dropped_tools", "model", "stream")

    def __init__(self, chat: dict[str, Any], dropped_tools: list[str]) -> None:
        self.chat = chat
        self.dropped_tools = dropped_tools
        self.model: str = chat["model"]
        self.stream: bool = bool(chat.get("stream"))


def request_to_chat(body: dict[str, Any]) -> MessagesRequest:
    """The OpenAI chat request that means the same as ``body``; a 400
    (:class:`GatewayError`) naming the field for what cannot be translated."""
    model = require(body, "model", str, "a string")
    max_tokens = require(body, "max_tokens", int, "an integer")
    if max_tokens < 1:
        raise GatewayError(400, "max_tokens: must be at least 1", param="max_tokens")
    messages = require(body, "messages", list, "a list of messages")
    if not messages:
        raise GatewayError(400, "messages: at least one message is required", param="messages")
    chat_messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        chat_messages.append({"role": "system", "content": system})
    for i, message in enumerate(messages):
        chat_messages += _message(message, i)
    chat: dict[str, Any] = {"model": model, "messages": chat_messages, "max_tokens": max_tokens}
    if optional(body, "stream", bool, "true or false"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    for name, target in (("temperature", "temperature"), ("top_p", "top_p")):
        value = optional(body, name, (int, float), "a number")
        if value is not None:
            chat[target] = value
    stop = optional(body, "stop_sequences", list, "a list of strings")
    if stop:
        if not all(isinstance(s, str) for s in stop):
            raise GatewayError(400, "stop_sequences: must be strings", param="stop_sequences")
        chat["stop"] = stop
    top_k = optional(body, "top_k", int, "an integer")
    if top_k is not None:
        chat["top_k"] = top_k  # for backends that have it; the route drops it otherwise
    user = (optional(body, "metadata", dict, "an object") or {}).get("user_id")
    if isinstance(user, str):
        chat["user"] = user
    _output_format(body, chat)
    tools, dropped = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    _tool_choice(body.get("tool_choice"), chat, tools, dropped)
    return MessagesRequest(chat, dropped)


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(_text_of_block(b, "system") for b in system)
    raise GatewayError(400, "system: must be a string or a list of text blocks", param="system")


def _text_of_block(block: Any, where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise GatewayError(400, f"{where}: only text blocks are allowed here", param=where)
    text = block.get("text")
    if not isinstance(text, str):
        raise GatewayError(400, f"{where}: a text block needs text", param=where)
    return text


def _message(message: Any, i: int) -> list[dict[str, Any]]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise GatewayError(400, f"{where}: must be an object", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise GatewayError(400, f"{where}.role: must be 'user' or 'assistant'", param=where)
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content: a string or a list of blocks", param=where)
    if role == "assistant":
        return [_assistant(content, where)]
    return _user(content, where)


def _assistant(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of_block(block, f"{where}.content[{j}]"))
        elif kind in ("tool_use", "server_tool_use"):
            calls.append(
                {
                    "id": str(block.get("id") or new_id("toolu_")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": dump_json(block.get("input") or {}),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the backend's own reasoning is not shown back to it
        else:
            _unsupported(kind, f"{where}.content[{j}]")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _user(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages, first, as OpenAI wants them
    right after the assistant's calls; the rest stays one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text_of_block(block, at)})
        elif kind == "image":
            parts.append(_image(block.get("source"), at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            parts.append({"type": "text", "text": str(block["source"].get("data", ""))})
        else:
            _unsupported(kind, at)
    out = results
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _image(source: Any, at: str) -> dict[str, Any]:
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, dict) and source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise GatewayError(400, f"{at}: an image source is base64 or url", param=at)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], at: str) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, list):
        content = "".join(_text_of_block(b, f"{at}.content") for b in content)
    elif not isinstance(content, str):
        raise GatewayError(400, f"{at}.content: a string or text blocks", param=at)
    if block.get("is_error"):
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": content}


def _unsupported(kind: Any, at: str) -> None:
    raise GatewayError(400, f"{at}: content blocks of type {kind!r} are not supported", param=at)


def _tools(tools: Any) -> tuple[list[dict[str, Any]], list[str]]:
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise GatewayError(400, "tools: must be a list", param="tools")
    out: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise GatewayError(400, f"tools[{i}]: a tool needs a name", param=f"tools[{i}]")
        if tool.get("type") not in (None, "custom"):
            dropped.append(tool["name"])  # a server tool: run by Anthropic, not here
            continue
        function: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out, dropped


def _tool_choice(
    choice: Any, chat: dict[str, Any], tools: list[dict[str, Any]], dropped: list[str]
) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        name = choice.get("name")
        if name in dropped:
            raise GatewayError(
                400, f"tool_choice: {name!r} is a server tool this gateway cannot run",
                param="tool_choice",
            )  # fmt: skip
        if name not in {t["function"]["name"] for t in tools}:
            raise GatewayError(400, f"tool_choice: no tool named {name!r}", param="tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in ("auto", "any", "none"):
        if tools:
            chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise GatewayError(400, "tool_choice: auto, any, tool or none", param="tool_choice")
    if tools and isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False


def _output_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """Structured output (``output_config.format``, or the older
    ``output_format``) as a JSON-schema response format."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {"name": "output", "schema": fmt.get("schema") or {}, "strict": True}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}


__all__ = ["MessagesRequest", "request_to_chat"]
