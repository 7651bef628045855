"""``ails chat`` in a pseudo-terminal (pexpect), and the spinner on a terminal.

Typed text is echoed by the terminal, so answers are recognised by words the
user did not type: ``openai/chunks:3`` answers ``tok0 tok1 tok2``,
``openai/endless`` streams ``tok0 tok1 ...`` until it is stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from cli_helpers import AILS, clean_env, run
from upstream import Upstream


@pytest.fixture
def up(upstream_session: Upstream) -> Iterator[Upstream]:
    upstream_session.reset()
    yield upstream_session


@pytest.fixture
def env(tmp_path: Path, up: Upstream) -> dict[str, str]:
    return clean_env(tmp_path / "home", up.base_url)


def spawn(env: dict[str, str], *args: str) -> Any:  # a pexpect.spawn
    child = pexpect.spawn(
        AILS, list(args), env=env, encoding="utf-8", timeout=15, dimensions=(40, 200)
    )
    return child


def leave(child: Any) -> int:
    child.sendeof()  # Ctrl-D at the prompt
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus)


def test_two_turns_share_context_then_reset(env: dict[str, str], up: Upstream) -> None:
    child = spawn(env, "chat", "-m", "openai/chunks:3")
    child.expect("Chatting with openai/chunks:3")
    child.expect("> ")
    child.sendline("first question")
    child.expect("tok0 tok1 tok2")
    child.expect("> ")
    child.sendline("second question")
    child.expect("tok0 tok1 tok2")
    child.expect("> ")
    assert up.requests[-1].body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "tok0 tok1 tok2 "},
        {"role": "user", "content": "second question"},
    ]
    child.sendline("/reset")
    child.expect("New conversation")
    child.expect("> ")
    child.sendline("fresh start")
    child.expect("tok0 tok1 tok2")
    child.expect("> ")
    assert up.requests[-1].body["messages"] == [{"role": "user", "content": "fresh start"}]
    assert leave(child) == 0

    logged = json.loads(run(env, "logs", "-n", "0", "--json").stdout)
    assert [e["prompt"] for e in logged] == ["first question", "second question", "fresh start"]
    assert logged[0]["conversation_id"] == logged[1]["conversation_id"]
    assert logged[2]["conversation_id"] != logged[1]["conversation_id"]


def test_ctrl_c_stops_an_answer_and_the_session_goes_on(env: dict[str, str], up: Upstream) -> None:
    child = spawn(env, "chat", "-m", "openai/endless")
    child.expect("> ")
    child.sendline("tell me everything")
    child.expect("tok5 ")
    child.sendintr()  # Ctrl-C mid-answer
    child.expect("answer stopped")
    child.expect("> ")
    assert up.wait_for_disconnects(1, timeout=5)  # the upstream stream was closed
    child.sendline("and now?")
    child.expect("tok0 tok1 tok2 ")  # the next question is answered
    child.sendintr()
    child.expect("> ")
    second = up.requests[-1].body["messages"]
    assert second[0] == {"role": "user", "content": "tell me everything"}
    assert second[1]["role"] == "assistant" and second[1]["content"].startswith("tok0 tok1")
    assert second[2] == {"role": "user", "content": "and now?"}
    # Ctrl-C at the prompt clears the line and keeps the session too.
    child.send("half typed")
    child.expect("half typed")  # echoed: the prompt is reading, as a user would see
    child.sendintr()
    child.expect("> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_continues_a_logged_conversation(env: dict[str, str], up: Upstream) -> None:
    assert run(env, "-m", "openai/chunks:2", "remember me").returncode == 0
    child = spawn(env, "chat", "-c")
    child.expect("Chatting with openai/chunks:2, continuing ")
    child.expect("> ")
    child.sendline("do you?")
    child.expect("tok0 tok1")
    child.expect("> ")
    assert leave(child) == 0
    assert [m["content"] for m in up.requests[-1].body["messages"]] == [
        "remember me",
        "tok0 tok1 ",
        "do you?",
    ]


def test_chat_reads_turns_from_a_pipe(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "chat", "-m", "openai/chunks:2", input="one\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 \ntok0 tok1 \n"  # no prompt, no banner on stdout
    assert len(up.requests[-1].body["messages"]) == 3


def test_spinner_on_a_terminal_until_the_first_token(env: dict[str, str]) -> None:
    child = spawn(env, "-m", "openai/headerstall:700", "hi")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    out = child.before
    assert "openai/headerstall:700" in out  # the spinner's label was drawn...
    erased = out.rindex("\r\x1b[K")
    assert out.index("tok0") > erased  # ...and erased before the answer


def test_ctrl_d_leaves_with_exit_0(env: dict[str, str]) -> None:
    child = spawn(env, "chat", "-m", "openai/chunks:1")
    child.expect("> ")
    assert leave(child) == 0
