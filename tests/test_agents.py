"""Real agent clients through ``ails serve``, offline (slow target).

Claude Code (Anthropic Messages) and Codex CLI (OpenAI Responses), pinned and
installed into .agents/ by scripts/install-agents.sh, each complete a one-shot
prompt through the gateway in front of tests/upstream.py. Each runs in a
network namespace holding only loopback (tests/agent_harness.py), so nothing
leaves the machine; what they try anyway is recorded by an egress trap. The
checks: the agent prints the upstream's answer (an echo of the request it
received, so derived from what the agent sent, not canned) and exits 0; what
it sent is what docs/agents.md records (size, tools, fields); nothing of it is
refused (no 4xx/5xx anywhere); hosted tools are dropped and named in
``x-ails-dropped-tools``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_harness import AGENT_TIMEOUT_S, AGENTS_BIN, CLAUDE_MODEL, CODEX_MODEL, KEY, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(AGENT_TIMEOUT_S) + 120)]

#: Response item / tool types that are functions the backend can be given.
_FUNCTION_TYPES = {"function", "namespace", "custom"}
_ACCESS = re.compile(r"ails\.access: \S+ (\S+) (\S+) (\d{3}) ")


def _run_agent(agent: str) -> dict[str, Any]:
    """The harness in a fresh network namespace (loopback only); its JSON report."""
    for name in ("claude", "codex"):
        if not (AGENTS_BIN / name).exists():
            pytest.fail(f"{AGENTS_BIN / name} is missing: run bash scripts/install-agents.sh")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(
            "these tests run each agent in a network namespace of its own, and "
            f"`unshare -rn` is refused here: {probe.stderr.strip()}"
        )
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, str(ROOT / "tests" / "agent_harness.py"), agent],
        capture_output=True, text=True, timeout=AGENT_TIMEOUT_S + 90, cwd=ROOT / "tests",
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def claude() -> dict[str, Any]:
    return _run_agent("claude")


@pytest.fixture(scope="module")
def codex() -> dict[str, Any]:
    return _run_agent("codex")


def _echo(chat: dict[str, Any]) -> str:
    """tests/upstream.py's answer to a chat request: the words of its last message."""
    content = chat["messages"][-1]["content"]
    assert isinstance(content, str) and content.split(), content
    return " ".join(content.split())


def _nothing_refused(report: dict[str, Any]) -> None:
    for ex in report["exchanges"]:
        assert ex["status"] == 200, (ex["path"], ex["status"])
    access = _ACCESS.findall(report["gateway_log"])
    assert len(access) == len(report["exchanges"]), report["gateway_log"]
    assert all(int(status) < 400 for _, _, status in access), report["gateway_log"]
    for word in ("Traceback", "ERROR", "WARNING"):
        assert word not in report["gateway_log"], report["gateway_log"]


def _only(report: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent's one request (to ``path``) and the one chat request it became."""
    assert [ex["path"] for ex in report["exchanges"]] == [path], report["exchanges"]
    assert len(report["upstream"]) == 1, report["upstream"]
    chat = report["upstream"][0]["body"]
    assert chat["model"] == "test-model" and chat["stream"] is True
    return report["exchanges"][0], chat


# -- Claude Code --------------------------------------------------------------------------------


def test_claude_code_answers_with_the_upstreams_words(claude: dict[str, Any]) -> None:
    assert claude["rc"] == 0, claude["stderr"]
    _, chat = _only(claude, "/v1/messages?beta=true")
    assert " ".join(claude["stdout"].split()) == _echo(chat)
    assert _echo(chat).endswith("Say hi")


def test_claude_code_request_is_taken_whole(claude: dict[str, Any]) -> None:
    sent, chat = _only(claude, "/v1/messages?beta=true")
    body, headers = sent["body"], sent["headers"]
    assert headers["authorization"] == f"Bearer {KEY}" and "x-api-key" not in headers
    assert headers["anthropic-version"] and headers["anthropic-beta"]
    assert headers["user-agent"].startswith("claude-cli/2.1.328")
    assert body["model"] == CLAUDE_MODEL and body["stream"] is True
    # A large prompt: system as a list of blocks, a dozen tools with extra keys.
    assert sent["size"] > 30_000
    assert isinstance(body["system"], list) and len(body["system"]) >= 2
    assert len(body["tools"]) >= 8
    assert any("defer_loading" in tool for tool in body["tools"])
    assert {"thinking", "metadata"} <= body.keys()
    # Every tool reaches the backend, as a function with the same name.
    assert [t["function"]["name"] for t in chat["tools"]] == [t["name"] for t in body["tools"]]
    assert chat["messages"][0]["role"] == "system"
    assert "x-ails-dropped-tools" not in sent["response_headers"]
    _nothing_refused(claude)


def test_claude_code_stays_on_the_machine(claude: dict[str, Any]) -> None:
    # With its non-essential traffic off, Claude Code tries no other host at all.
    assert claude["egress"] == []


# -- Codex CLI ----------------------------------------------------------------------------------


def test_codex_answers_with_the_upstreams_words(codex: dict[str, Any]) -> None:
    assert codex["rc"] == 0, codex["stderr"]
    _, chat = _only(codex, "/v1/responses")
    assert " ".join(codex["stdout"].split()) == _echo(chat) == "Say hi"
    assert f"model: {CODEX_MODEL}" in codex["stderr"]


def test_codex_request_is_taken_and_hosted_tools_named(codex: dict[str, Any]) -> None:
    sent, chat = _only(codex, "/v1/responses")
    body, headers = sent["body"], sent["headers"]
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == CODEX_MODEL and body["stream"] is True and body["store"] is False
    assert sent["size"] > 20_000
    assert {"include", "reasoning"} <= body.keys()
    assert "developer" in {item.get("role") for item in body["input"]}
    hosted = [t["type"] for t in body["tools"] if t["type"] not in _FUNCTION_TYPES]
    assert "web_search" in hosted
    assert sent["response_headers"]["x-ails-dropped-tools"].split(",") == hosted
    # The rest reach the backend: a namespace's tools one by one.
    wanted = sum(len(t["tools"]) if t["type"] == "namespace" else 1
                 for t in body["tools"] if t["type"] in _FUNCTION_TYPES)  # fmt: skip
    assert len(chat["tools"]) == wanted
    assert all(m["role"] != "developer" for m in chat["messages"])
    _nothing_refused(codex)


def test_the_pins_are_the_installed_versions() -> None:
    lock = json.loads((ROOT / ".agents" / "package.json").read_text())
    assert lock["dependencies"] == {
        "@anthropic-ai/claude-code": "2.1.328",
        "@openai/codex": "0.169.0",
    }
    assert Path(AGENTS_BIN / "claude").exists() and Path(AGENTS_BIN / "codex").exists()
