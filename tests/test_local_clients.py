"""Popular client libraries against ``ails serve`` on the embedded model, used the
way their documentation shows: langchain-openai (``max_tokens``, streaming,
``with_structured_output``, ``bind_tools``), instructor in its default mode, and
pydantic-ai's ``output_type``. Each is pinned in pyproject.toml (instructor in
a venv of its own, scripts/install-client-venvs.sh).

None of them may fetch tokenizer files: there is no network, and tiktoken's
encodings would be downloaded on first use. The tests check that none was loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from gateway_proc import Gateway

pytestmark = pytest.mark.local

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTOR_PYTHON = ROOT / ".clients" / "instructor" / "bin" / "python"
ALIAS = "gpt-4o-mini"


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=130)


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str = Field(max_length=40)


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with Gateway(["--alias", f"{ALIAS}=local/default"], start_timeout=180) as g:
        yield g


@pytest.fixture(autouse=True)
def no_tokenizer_downloads() -> Iterator[None]:
    yield
    registry = sys.modules.get("tiktoken.registry")
    if registry is not None:
        assert not registry.ENCODINGS, "a tiktoken encoding was loaded (a download)"


def test_langchain_chat_openai(gw: Gateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=ALIAS,
        base_url=gw.base_url,
        api_key="none",  # type: ignore[arg-type]
        max_tokens=8,  # sent as max_completion_tokens
        temperature=0,
        max_retries=0,
    )
    reply = llm.invoke("Say hello.")
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["model_name"] == ALIAS
    usage = reply.usage_metadata
    assert usage is not None and 0 < usage["output_tokens"] <= 8
    pieces = [chunk.content for chunk in llm.stream("Count to five.")]
    assert len(pieces) > 2 and "".join(str(p) for p in pieces)


def test_langchain_structured_output_and_tools(gw: Gateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=ALIAS,
        base_url=gw.base_url,
        api_key="none",  # type: ignore[arg-type]
        max_tokens=80,
        temperature=0,
        max_retries=0,
    )
    person = llm.with_structured_output(Person).invoke("Invent a person.")
    assert isinstance(person, Person)
    message = llm.bind_tools([GetWeather], tool_choice="GetWeather").invoke(
        "What is the weather in Rome?"
    )
    calls = message.tool_calls  # type: ignore[attr-defined]
    assert len(calls) == 1 and calls[0]["name"] == "GetWeather"
    GetWeather.model_validate(calls[0]["args"])


def test_instructor_default_mode(gw: Gateway) -> None:
    assert INSTRUCTOR_PYTHON.exists(), (
        "instructor's venv is missing: run bash scripts/install-client-venvs.sh"
    )
    script = ROOT / "tests" / "clients" / "instructor_check.py"
    done = subprocess.run(
        [str(INSTRUCTOR_PYTHON), str(script), gw.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    city = json.loads(done.stdout)
    assert set(city) == {"name", "country", "population_millions"}
    assert isinstance(city["population_millions"], int)


def test_pydantic_ai_output_type(gw: Gateway) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(ALIAS, provider=OpenAIProvider(base_url=gw.base_url, api_key="none"))
    agent = Agent(model, output_type=Person, retries=0)
    result = agent.run_sync("Invent a person.", model_settings={"max_tokens": 80, "temperature": 0})
    assert isinstance(result.output, Person)
