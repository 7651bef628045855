"""The library and the CLI have the embedded model's structured output and tools:
``Client.create`` passes tools and ``response_format`` (calls come through the
chunks and the ``Completion``), ``create_completion`` keeps yielding text, and
``ails --schema`` prints JSON that validates, as llm's ``--schema`` does."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import jsonschema
import pytest

import ails
from cli_helpers import AILS, clean_env, run

pytestmark = pytest.mark.local

PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


def test_client_tool_calls_in_the_completion_and_the_chunks() -> None:
    with ails.Client() as client:
        done = client.chat.completions.create(
            model="local/default", messages=ASK, tools=[TOOL], tool_choice="required", max_tokens=40
        )
        choice = done.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMS)
        with client.chat.completions.create(
            model="local/default",
            messages=ASK,
            tools=[TOOL],
            tool_choice="required",
            max_tokens=40,
            stream=True,
        ) as stream:
            chunks = list(stream)
    deltas = [d for c in chunks for ch in c.choices for d in (ch.delta.tool_calls or [])]
    assert deltas[0]["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads("".join(d["function"]["arguments"] for d in deltas)), PARAMS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None  # folded into the last chunk, not a chunk of its own


def test_create_completion_yields_text_that_follows_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    text = "".join(
        ails.create_completion(
            "local/default",
            [{"role": "user", "content": "What is 2 + 2?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
            max_tokens=30,
            temperature=0,
        )
    )
    jsonschema.validate(json.loads(text), schema)


def test_cli_schema_in_llms_concise_form(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home", None)
    result = run(
        env,
        "--schema",
        "name, age int, bio: one short line",
        "-o",
        "max_tokens=120",
        "-o",
        "temperature=0",
        "Invent a person.",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    person = json.loads(result.stdout)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert isinstance(person["bio"], str)


PLUGIN = """
from ails.providers.base import ChunkStream, Provider


class Plain(Provider):
    name = "plain"
    models = ("p1",)
    default_model = "p1"

    async def connect(self, model: str, messages: list, stream: bool = True) -> ChunkStream:
        raise AssertionError("--schema must be refused before any request")
"""


def test_cli_schema_with_a_provider_that_cannot_take_it_exits_2(tmp_path: Path) -> None:
    (tmp_path / "ails_plain.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "ails_plain-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ails-plain\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ails.providers]\nplain = ails_plain:Plain\n")
    env = clean_env(tmp_path / "home", None)
    env.pop("AILS_DISABLE_PLUGINS")
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [AILS, "-m", "plain/p1", "--schema", "name", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "response_format" in result.stderr and "Traceback" not in result.stderr
    home = clean_env(tmp_path / "home", None)
    bad = run(home, "--schema", "{oops", "hi")
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    unenforced = '{"type": "array", "uniqueItems": true}'
    bad = run(home, "--schema", unenforced, "hi", timeout=120)
    assert bad.returncode == 2 and "uniqueItems" in bad.stderr
    empty = '{"type": "string", "minLength": 5, "maxLength": 1}'
    bad = run(home, "--schema", empty, "hi", timeout=120)
    assert bad.returncode == 2 and "minLength 5 > maxLength 1" in bad.stderr
