"""The gateway in front of the embedded model, as the issue describes it: the
seed's example client streams an answer from
``ails serve --allow-signed --alias gpt-3.5-turbo=local/default``.

The seed's client cannot send ``max_tokens``, so the gateway caps it
(``--max-tokens-cap``) to keep the answer short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests  # noqa: F401 - the seed client (a subprocess) needs it

from gateway_proc import Gateway

pytestmark = pytest.mark.local

SEED_CLIENT = Path(__file__).resolve().parent / "seed_client.py"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    args = ["--allow-signed", "--alias", "gpt-3.5-turbo=local/default", "--max-tokens-cap", "16"]
    launched = int(time.time())
    with Gateway(args, start_timeout=180) as g:
        g.launched_at = launched  # type: ignore[attr-defined]
        yield g


def test_models_are_dated_by_the_load_and_it_is_announced_once(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0)
    created = {m.id: m.created for m in client.models.list()}
    assert set(created) == {"local/default", "default", "gpt-3.5-turbo"}
    assert len(set(created.values())) == 1
    assert gw.launched_at <= created["local/default"] <= time.time()  # type: ignore[attr-defined]
    assert client.models.retrieve("gpt-3.5-turbo").created == created["local/default"]
    # One line for loading the embedded model, the runtime's own.
    assert gw.log.count("ails: loading model ") == 1, gw.log
    assert "loading the embedded model" not in gw.log


def test_seed_example_streams_from_the_embedded_model(gw: Gateway) -> None:
    done = subprocess.run(
        [sys.executable, str(SEED_CLIENT)],
        env={**os.environ, "AILS_GATEWAY_URL": gw.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "no answer"
    assert gw.wait_for_log("POST /v1/chat/completions 200")


def test_sdk_stream_usage_only_when_asked(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0)
    models = {m.id: m.owned_by for m in client.models.list()}
    assert models == {"local/default": "local", "default": "local", "gpt-3.5-turbo": "local"}
    chunks = list(
        client.chat.completions.create(
            model="local/default",
            messages=HELLO,
            stream=True,
            max_tokens=4,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 4
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=HELLO, stream=True, max_tokens=4
    )
    body = raw.http_response.read().decode()
    assert body.endswith("data: [DONE]\n\n") and '"usage"' not in body
    events = [b[len("data: ") :] for b in body.split("\n\n")[:-2]]
    assert events and all("\n" not in e and json.loads(e)["choices"] for e in events)
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events)


def test_non_stream_from_the_embedded_model(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-3.5-turbo", messages=HELLO, max_tokens=4
    )
    body = json.loads(raw.http_response.read())
    assert body["object"] == "chat.completion" and body["id"] and body["created"] > 0
    assert body["choices"][0]["message"]["role"] == "assistant"
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens <= 4


def test_the_other_dialects_are_served_by_the_embedded_model(gw: Gateway) -> None:
    """Anthropic's SDK and OpenAI's Responses API, streamed, on the embedded model."""
    claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    hi: Any = [{"role": "user", "content": "Say hello."}]
    with claude.messages.stream(model="local/default", max_tokens=8, messages=hi) as s:
        text = "".join(s.text_stream)
        message = s.get_final_message()
    assert text and message.content[0].text == text  # type: ignore[union-attr]
    assert message.model == "local/default" and 0 < message.usage.output_tokens <= 8
    assert message.stop_reason in ("end_turn", "max_tokens")
    oai = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    with oai.responses.stream(model="local/default", input="Say hi.", max_output_tokens=8) as r:
        events = list(r)
    last = events[-1].response  # type: ignore[union-attr]
    assert last.status in ("completed", "incomplete") and last.output_text
    assert last.usage is not None and 0 < last.usage.output_tokens <= 8


def test_text_completions_from_the_embedded_model(gw: Gateway) -> None:
    """The runtime's own text completion (no chat template), streamed and not."""
    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    answer = oai.completions.create(model="local/default", prompt="def add(a, b):", max_tokens=4)
    assert answer.object == "text_completion" and answer.model == "local/default"
    assert answer.choices[0].text and answer.choices[0].finish_reason in ("length", "stop")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 4
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo",
            prompt=["def add(a, b):"],
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" and c.model == "gpt-3.5-turbo" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 4
    raw = oai.completions.with_raw_response.create(
        model="default", prompt="x = ", max_tokens=2, stream=True
    )
    body = raw.http_response.read().decode()
    assert body.endswith("data: [DONE]\n\n") and '"usage"' not in body


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"echo": True}, "echo"),
        ({"suffix": "    return c"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"n": 2}, "n"),
        ({"logprobs": 2}, "logprobs"),
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"temprature": 0.5}, "temprature"),
    ],
)
def test_text_completion_parameters_the_embedded_model_refuses(
    gw: Gateway, extra: dict[str, Any], param: str
) -> None:
    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        oai.completions.create(model="default", prompt="x", max_tokens=1, extra_body=extra)
    assert info.value.param == param and param in info.value.message


LONG = "hello " * 5000  # over the embedded model's 4,096-token context


def test_a_prompt_over_the_context_is_a_400_in_each_dialect(gw: Gateway) -> None:
    """Before any byte of answer, in the dialect's own shape, with the numbers."""
    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as chat:
            oai.chat.completions.create(
                model="default", messages=[{"role": "user", "content": LONG}], max_tokens=1,
                stream=stream,
            )  # fmt: skip
        assert chat.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as text:
            oai.completions.create(model="default", prompt=LONG, max_tokens=1, stream=stream)
        assert text.value.code == "context_length_exceeded" and text.value.param == "prompt"
        assert "maximum context length is 4096 tokens" in text.value.message
        with pytest.raises(openai.BadRequestError) as responses:
            oai.responses.create(model="default", input=LONG, max_output_tokens=1, stream=stream)
        assert responses.value.code == "context_length_exceeded"
        assert "4096" in responses.value.message and "AILS_LOCAL_CTX" in responses.value.message
        claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as messages:
            claude.messages.create(
                model="default", max_tokens=1, messages=[{"role": "user", "content": LONG}],
                stream=stream,
            )  # fmt: skip
        body: Any = messages.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"].startswith("prompt is too long: ")
        assert "> 4096 maximum" in body["error"]["message"]


def _runtime_count(prompt: str) -> int:
    """The embedded model's tokenizer on a prompt rendered here, through the
    runtime's raw completions handler (not the code the gateway uses): the
    usage of a one-token completion, or the count in its refusal of a prompt
    longer than the context."""
    from ails.local.runtime import Settings, get_runtime

    runtime = get_runtime(Settings(n_ctx=512, parallel=1))
    answer = runtime.server.handle_completions({"prompt": prompt, "n_predict": 1})
    if "error" in answer:
        return int(answer["error"]["n_prompt_tokens"])
    return int(answer["usage"]["prompt_tokens"])


def test_count_tokens_is_the_embedded_models_tokenizer(gw: Gateway) -> None:
    """Exact: the chat-templated prompt in the model's own tokens, for a prompt
    that fits the context and one that does not (Claude Code's do not)."""
    claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    for text in ("How many tokens is this question?", "hello there, " * 1500):
        raw = claude.messages.with_raw_response.count_tokens(
            model="local/default", system="Be brief.", messages=[{"role": "user", "content": text}]
        )
        assert raw.headers["x-ails-token-count"] == "exact"
        # Qwen's chat template (ChatML), rendered by hand.
        prompt = (
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        )
        assert raw.parse().input_tokens == _runtime_count(prompt)
    schema = {"type": "object", "properties": {"word": {"type": "string"}}}
    tool: Any = {"name": "lookup", "description": "Look a word up", "input_schema": schema}
    hi: Any = [{"role": "user", "content": "hi"}]
    bare = claude.messages.count_tokens(model="local/default", messages=hi).input_tokens
    tooled = claude.messages.count_tokens(model="local/default", messages=hi, tools=[tool])
    assert tooled.input_tokens > bare + 10  # the template renders the tools


def test_a_schema_no_value_meets_is_a_400_and_holds_no_slot(gw: Gateway) -> None:
    """Before the check the runtime compiled it into a grammar that allows no token and
    sat silent, holding a slot until the 120 s idle timeout; the client's own 30 s
    timeout stands for "not a hang" here."""
    client = openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0, timeout=30)
    empty: Any = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "string", "minLength": 5, "maxLength": 1}},
    }
    for _ in range(3):  # more than the model's two slots: each would keep one
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="local/default", messages=HELLO, max_tokens=4, response_format=empty
            )
        err: Any = info.value.body
        assert err["type"] == "invalid_request_error" and err["code"] == "invalid_schema"
        assert err["param"] == "response_format.json_schema.schema"
        assert "minLength 5 > maxLength 1" in err["message"] and "(at #)" in err["message"]
    reply = client.chat.completions.create(model="local/default", messages=HELLO, max_tokens=4)
    assert reply.choices[0].message.content
