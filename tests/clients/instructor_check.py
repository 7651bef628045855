"""instructor in its default mode (tools, a named tool_choice) against a gateway.

Run by tests/test_local_clients.py with the interpreter of its own virtual
environment (scripts/install-client-venvs.sh): instructor's pins cannot share an
environment with the openai SDK ails tests with. Prints the extracted object
as JSON; any failure is a traceback and a non-zero exit.
"""

from __future__ import annotations

import sys

import instructor
import openai
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)
    population_millions: int = Field(ge=0, le=100)


def main(base_url: str) -> None:
    client = instructor.from_openai(openai.OpenAI(base_url=base_url, api_key="none", max_retries=0))
    assert client.mode == instructor.Mode.TOOLS, client.mode
    city = client.chat.completions.create(
        model="gpt-4o-mini",
        response_model=City,
        messages=[{"role": "user", "content": "Tell me about Paris."}],
        max_tokens=80,
        temperature=0,
        max_retries=0,  # one request: the call must parse the first time
    )
    print(city.model_dump_json())


if __name__ == "__main__":
    main(sys.argv[1])
