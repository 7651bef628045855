"""``POST /v1/completions`` (legacy text completions) through ``ails serve``
in front of the tests' upstream, judged by the official ``openai`` SDK: the
upstream's bytes are passed on, streamed and not; failures before and after
the answer started; a backend that serves no text completions is a 404 that
names the model. (The embedded model's own text completions are tested in
tests/test_gateway_local.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from gateway_proc import Gateway
from test_plugins import PLUGIN, install_plugin
from upstream import Upstream

KEY = "completions-test-key-42"
MODELS = ["test-model", "status:503", "status:400", "midstream_error:2", "chunks:3"]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=MODELS) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream) -> Iterator[Gateway]:
    with Gateway(["--upstream", up.base_url, "--api-key", KEY, "--max-retries", "0"]) as g:
        yield g


@pytest.fixture
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)


def test_text_completion_is_the_upstreams_answer(oai: openai.OpenAI, up: Upstream) -> None:
    raw = oai.completions.with_raw_response.create(
        model="test-model", prompt="once upon a time", max_tokens=3, temperature=0, seed=7
    )
    answer = raw.parse()
    assert answer.object == "text_completion"
    assert answer.choices[0].text == "once upon a "  # three words: max_tokens cut it
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert raw.headers["x-request-id"]
    sent = up.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": "test-model", "prompt": "once upon a time", "max_tokens": 3,
                         "temperature": 0, "seed": 7, "stream": False}  # fmt: skip
    # A list of one prompt is passed on as it is.
    listed = oai.completions.create(model="test-model", prompt=["just this"])
    assert listed.choices[0].text == "just this " and listed.choices[0].finish_reason == "stop"


def test_text_completion_streams_the_upstreams_chunks(oai: openai.OpenAI, gw: Gateway) -> None:
    stream = oai.completions.create(
        model="test-model",
        prompt="a b c d",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts[:4] == ["a ", "b ", "c ", "d "] and "".join(texts) == "a b c d "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    # Without include_usage no usage chunk; the stream ends with [DONE].
    r = requests.post(
        f"{gw.base_url}/completions",
        json={"model": "chunks:3", "prompt": "x", "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    events = [json.loads(b[len("data: ") :]) for b in r.text.split("\n\n")[:-2]]
    assert all(e["object"] == "text_completion" and "usage" not in e for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == "tok0 tok1 tok2 "


def test_text_completion_failures(oai: openai.OpenAI, gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="nobody-serves-this", prompt="x")
    with pytest.raises(openai.BadRequestError) as bad:
        oai.completions.create(model="test-model", prompt={"not": "a prompt"})  # type: ignore[arg-type]
    assert bad.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.completions.create(model="test-model", prompt="x", max_tokens=0)
    assert bad.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as upstream_400:
        oai.completions.create(model="status:400", prompt="x")
    assert "scripted 400" in upstream_400.value.message
    with pytest.raises(openai.InternalServerError):
        oai.completions.create(model="status:503", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.base_url, api_key="wrong-key-here", max_retries=0
                      ).completions.create(model="test-model", prompt="x")  # fmt: skip
    # A failure after the answer started is an error event, never a silent end.
    with pytest.raises(openai.APIError, match="upstream exploded"):
        for _ in oai.completions.create(model="midstream_error:2", prompt="x", stream=True):
            pass
    signed = {"model": "test-model", "prompt": "x", "d": "2026-01-01", "t": "1", "s": "0" * 64}
    r = requests.post(f"{gw.base_url}/completions", json=signed,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "signature_malformed"
    assert "Traceback" not in gw.log


def test_a_backend_without_text_completions_is_a_404_naming_the_model(tmp_path: Path) -> None:
    pythonpath = install_plugin(tmp_path / "site", PLUGIN)
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {"AILS_CONFIG": str(config), "PYTHONPATH": pythonpath}
    with Gateway(["--backend", "reverse"], env=env) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        for stream in (False, True):
            with pytest.raises(openai.NotFoundError) as info:
                client.completions.create(model="r1", prompt="x", stream=stream)
            assert "'r1'" in info.value.message
            assert "does not serve text completions" in info.value.message
