"""The pure half of tests/anthropic_upstream.py: the checks a Messages API
request must pass, and the answer derived from it (its docstring says how).
No I/O, so the server module stays the server."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking",
               "redacted_thinking"}  # fmt: skip


class Refusal(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@dataclass
class Plan:
    """What one request is answered with."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


# -- the answer, derived from the request ----------------------------------------------------


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "invalid_request_error", "messages: at least one message is required")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise Refusal(400, "invalid_request_error",
                          f"messages.{i}.role: Input should be 'user' or 'assistant'")  # fmt: skip
        blocks = _blocks(message.get("content"))
        answered = {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}
        if role == "user":
            if answered - pending:
                raise Refusal(400, "invalid_request_error",
                              f"messages.{i}: unexpected tool_use_id in tool_result blocks: "
                              f"{', '.join(sorted(answered - pending))}")  # fmt: skip
            pending = set()
        for j, block in enumerate(blocks):
            if block.get("type") not in BLOCK_TYPES:
                where = f"messages.{i}.content.{j}.type"
                raise Refusal(
                    400, "invalid_request_error", f"{where}: unknown {block.get('type')!r}"
                )
        if role == "assistant":
            pending = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Refusal(400, "invalid_request_error", "content: a string or a list of blocks")
    return [b if isinstance(b, dict) else {"type": None} for b in content]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def count_input(body: dict[str, Any]) -> int:
    """The test server's tokenizer: whitespace-separated words."""
    texts = [_text_of(body.get("system"))]
    for message in body.get("messages") or []:
        for block in _blocks(message.get("content")):
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                texts.append(_text_of(block.get("content")))
            elif block.get("type") == "tool_use":
                texts.append(json.dumps(block.get("input")))
    for tool in body.get("tools") or []:
        texts += [str(tool.get("name", "")), str(tool.get("description", ""))]
    return sum(len(t.split()) for t in texts)


def plan_answer(body: dict[str, Any]) -> Plan:
    last = body["messages"][-1]
    blocks = _blocks(last.get("content")) if last.get("role") == "user" else []
    results = [b for b in blocks if b.get("type") == "tool_result"]
    text = " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    if results:
        text = "tool said: " + " ".join(_text_of(b.get("content")) for b in results)
    plan = Plan(input_tokens=count_input(body))
    tool = _chosen_tool(body, text) if not results else None
    words = text.split() or ["(empty)"]
    if tool is not None:
        words = ["I", "will", "use", str(tool["name"])]
    limit = int(body["max_tokens"])
    if len(words) > limit:
        words, plan.stop_reason, tool = words[:limit], "max_tokens", None
    answer = " ".join(words)
    for stop in body.get("stop_sequences") or []:
        if stop and stop in answer:
            answer, plan.stop_reason, plan.stop_sequence = answer[: answer.index(stop)], \
                "stop_sequence", stop  # fmt: skip
            tool = None
    plan.blocks.append({"type": "text", "text": answer})
    plan.output_tokens = len(answer.split())
    if tool is not None:
        plan.blocks.append({"type": "tool_use", "id": "toolu_" + secrets.token_hex(8),
                            "name": tool["name"], "input": _fill(tool, text)})  # fmt: skip
        plan.stop_reason = "tool_use"
        plan.output_tokens += 1
    return plan


def _chosen_tool(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[0]
    return next((t for t in tools if t["name"] in text.split()), None)


def _fill(tool: dict[str, Any], text: str) -> dict[str, Any]:
    props = (tool.get("input_schema") or {}).get("properties") or {}
    out: dict[str, Any] = {}
    for name, schema in props.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        out[name] = {"integer": len(text.split()), "number": len(text.split()),
                     "boolean": True}.get(str(kind), text)  # fmt: skip
    return out


def deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block["type"] == "text":
        words = block["text"].split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        return [{"type": "text_delta", "text": p} for p in pieces if p]
    raw = json.dumps(block["input"])
    third = max(1, len(raw) // 3)
    parts = [raw[i : i + third] for i in range(0, len(raw), third)]
    return [{"type": "input_json_delta", "partial_json": p} for p in parts]


def message_body(body: dict[str, Any], plan: Plan, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
        "usage": {"input_tokens": plan.input_tokens, "output_tokens": plan.output_tokens},
    }
