"""``ails serve`` speaking Anthropic's Messages API and OpenAI's Responses API
over the tests' upstream, judged by the official ``anthropic`` and ``openai``
SDKs: keys, errors in each dialect's shape, streams, mid-stream failures, and
stored responses continued with ``previous_response_id``."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import requests

from ails.server.ratelimit import FLUSH_S
from gateway_proc import Gateway
from upstream import Upstream

KEY = "dialect-test-key-0123"
OTHER = "another-client-key-4567"
MODELS = ["test-model", "status:503", "status:400", "status:429:retry-after=7",
          "status:401", "status:403", "midstream_error:2", "chunks:3",
          "keepalive:2:300", "badcalls"]  # fmt: skip


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=MODELS) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream) -> Iterator[Gateway]:
    args = ["--upstream", up.base_url, "--api-key", KEY, "--api-key", OTHER,
            "--max-retries", "0", "--alias", "claude-*=test-model",
            "--alias", "claude-opus-*=chunks:3"]  # fmt: skip
    g = Gateway(args).start()
    try:
        yield g
    finally:
        assert g.stop() == 0, g.log


@pytest.fixture
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


@pytest.fixture
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)


def _last_chat(up: Upstream) -> dict[str, Any]:
    body = up.requests[-1].body
    assert isinstance(body, dict)
    return body


# -- /v1/messages -------------------------------------------------------------------------------


def test_messages_create_and_stream(claude: anthropic.Anthropic, up: Upstream) -> None:
    hi: Any = [{"role": "user", "content": "hello there friend"}]
    message = claude.messages.create(
        model="test-model", max_tokens=20, messages=hi, system="Be brief."
    )
    assert message.content[0].text == "hello there friend "  # type: ignore[union-attr]
    assert message.model == "test-model" and message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3
    sent = _last_chat(up)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 20
    with claude.messages.stream(model="test-model", max_tokens=20, messages=hi) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == "hello there friend " and len(pieces) == 3
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0


def test_messages_keys_as_claude_code_and_the_sdk_send_them(gw: Gateway) -> None:
    body = {"model": "test-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    url = f"{gw.url}/v1/messages?beta=true"
    base = {"anthropic-version": "2023-06-01"}
    for headers, status in [
        ({"x-api-key": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"x-api-key": KEY, "Authorization": f"Bearer {KEY}"}, 200),
        ({"x-api-key": KEY, "Authorization": f"Bearer {OTHER}"}, 401),
        ({"x-api-key": "wrong-key-wrong-key"}, 401),
        ({}, 401),
    ]:
        r = requests.post(url, json=body, headers={**base, **headers}, timeout=10)
        assert r.status_code == status, (headers, r.text)
        if status == 401:
            assert r.json()["type"] == "error"
            assert r.json()["error"]["type"] == "authentication_error"


def test_messages_errors_are_the_sdks_classes(gw: Gateway) -> None:
    hi: Any = [{"role": "user", "content": "x"}]
    bad = anthropic.Anthropic(base_url=gw.url, api_key="not-the-key-at-all", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="test-model", max_tokens=5, messages=hi)
    good = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        good.messages.create(model="no-such-model", max_tokens=5, messages=hi)
    with pytest.raises(anthropic.BadRequestError) as info:
        good.messages.create(model="test-model", max_tokens=0, messages=hi)
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as down:
        good.messages.create(model="status:503", max_tokens=5, messages=hi)
    assert down.value.status_code == 529
    assert down.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        good.messages.create(model="status:429:retry-after=7", max_tokens=5, messages=hi)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"] == "7"


def test_messages_mid_stream_failure_is_an_error_event(claude: anthropic.Anthropic) -> None:
    hi: Any = [{"role": "user", "content": "x"}]
    stream = claude.messages.stream(model="midstream_error:2", max_tokens=20, messages=hi)
    with pytest.raises(anthropic.APIStatusError) as info, stream as s:
        for _ in s:
            pass
    assert "upstream exploded" in str(info.value)


def test_refusals_before_the_handler_are_anthropic_shaped_on_messages(gw: Gateway) -> None:
    r = requests.get(f"{gw.url}/v1/messages", headers={"x-api-key": KEY}, timeout=10)
    assert r.status_code == 405
    assert r.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": r.json()["error"]["message"]},
    }
    assert "GET is not allowed" in r.json()["error"]["message"]
    r = requests.post(f"{gw.url}/v1/messages", data=b"{}", headers={"x-api-key": KEY}, timeout=10)
    assert r.status_code == 415 and r.json()["type"] == "error"


def test_the_security_screens_refusals_are_anthropic_shaped_on_messages(gw: Gateway) -> None:
    """A ``Host`` not allowed (421) and a CORS preflight from an origin not
    allowed (403) are refused before any handler: on /v1/messages in
    Anthropic's shape, elsewhere in OpenAI's."""
    port = gw.url.rsplit(":", 1)[1]
    rebound = {"x-api-key": KEY, "Host": f"evil.example:{port}"}
    body = {"model": "test-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = requests.post(f"{gw.url}{path}", json=body, headers=rebound, timeout=10)
        assert r.status_code == 421, path
        error = r.json()["error"]
        assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": error["message"]}}  # fmt: skip
        assert "--allowed-host" in error["message"]
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    r = requests.options(f"{gw.url}/v1/messages", headers=preflight, timeout=10)
    assert r.status_code == 403
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "permission_error"
    assert "--cors-origin" in r.json()["error"]["message"]
    r = requests.post(f"{gw.url}/v1/chat/completions", json=body, headers=rebound, timeout=10)
    assert r.status_code == 421 and r.json()["error"]["code"] == "host_not_allowed"


def test_an_upstream_refusing_the_gateways_key_is_a_server_error_in_each_dialect(
    claude: anthropic.Anthropic, oai: openai.OpenAI, gw: Gateway
) -> None:
    """The client's key is fine; the backend's is not: not the client's fault
    (no 401), and not a busy backend either (no 529, which the SDKs retry)."""
    hi: Any = [{"role": "user", "content": "x"}]
    for model in ("status:401", "status:403"):
        with pytest.raises(anthropic.InternalServerError) as info:
            claude.messages.create(model=model, max_tokens=5, messages=hi)
        assert info.value.status_code == 500, model
        assert info.value.body == {  # type: ignore[comparison-overlap]
            "type": "error",
            "error": {"type": "api_error", "message": info.value.body["error"]["message"]},  # type: ignore[index]
        }
        assert "refused the gateway's credentials" in str(info.value)
    stream = claude.messages.stream(model="status:401", max_tokens=5, messages=hi)
    with pytest.raises(anthropic.InternalServerError) as streamed, stream as s:
        list(s)
    assert streamed.value.status_code == 500
    assert streamed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    # The OpenAI dialects say the same with their own status (docs/gateway.md).
    chat = {"model": "status:401", "messages": hi}
    r = requests.post(f"{gw.url}/v1/chat/completions", json=chat,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_auth_failed"
    with pytest.raises(openai.InternalServerError) as responses:
        oai.responses.create(model="status:401", input="x")
    assert responses.value.status_code == 502 and responses.value.code == "upstream_auth_failed"


def test_signed_fields_are_refused_off_the_chat_route(gw: Gateway) -> None:
    body = {"model": "test-model", "max_tokens": 5, "d": "x", "t": 1, "s": "y",
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    r = requests.post(f"{gw.url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = requests.post(f"{gw.url}/v1/responses", json={**body, "input": "x"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "signature_malformed"


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_messages_tool_use_round_trip(claude: anthropic.Anthropic, up: Upstream) -> None:
    """tool_use from the backend, tool_result back, the final answer: streamed and not."""
    tools: Any = [{"name": "get_weather", "description": "Weather now", "input_schema": CITY}]
    ask: Any = {"role": "user", "content": "please get_weather Paris"}
    first = claude.messages.create(model="test-model", max_tokens=50, tools=tools, messages=[ask])
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id
    with claude.messages.stream(
        model="test-model", max_tokens=50, tools=tools, messages=[ask]
    ) as s:
        streamed = s.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in streamed.content if b.type == "tool_use"] == [
        ("get_weather", {"city": "Paris"})
    ]
    result: Any = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": use.id, "content": "sunny and mild"}]}  # fmt: skip
    turns: Any = [ask, {"role": "assistant", "content": first.content}, result]
    for stream in (False, True):
        if stream:
            with claude.messages.stream(
                model="test-model", max_tokens=50, tools=tools, messages=turns
            ) as s:
                final = s.get_final_message()
        else:
            final = claude.messages.create(
                model="test-model", max_tokens=50, tools=tools, messages=turns
            )
        assert final.stop_reason == "end_turn"
        assert final.content[0].text == "sunny and mild "  # type: ignore[union-attr]
        sent = _last_chat(up)["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == use.id
        assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny and mild"}


def test_responses_function_call_round_trip(oai: openai.OpenAI, up: Upstream) -> None:
    """function_call from the backend, function_call_output back after
    previous_response_id, the final answer: streamed and not."""
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": CITY}]
    first = oai.responses.create(model="test-model", input="please get_weather Oslo", tools=tools)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    with oai.responses.stream(
        model="test-model", input="please get_weather Oslo", tools=tools
    ) as s:
        deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        streamed = s.get_final_response()
    assert "".join(deltas) == call.arguments
    assert [i.type for i in streamed.output] == ["function_call"]
    for stream in (False, True):
        output: Any = [{"type": "function_call_output", "call_id": call.call_id,
                        "output": "cold and clear"}]  # fmt: skip
        if stream:
            with oai.responses.stream(
                model="test-model", input=output, tools=tools, previous_response_id=first.id
            ) as s:
                final = s.get_final_response()
        else:
            final = oai.responses.create(
                model="test-model", input=output, tools=tools, previous_response_id=first.id
            )
        assert final.output_text == "cold and clear " and final.status == "completed"
        sent = _last_chat(up)["messages"]
        assert sent[0] == {"role": "user", "content": "please get_weather Oslo"}
        assert sent[1]["tool_calls"][0]["id"] == call.call_id
        assert sent[2] == {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": "cold and clear",
        }


# -- /v1/responses ------------------------------------------------------------------------------


def test_responses_create_stream_and_hosted_tools(oai: openai.OpenAI, up: Upstream) -> None:
    response = oai.responses.create(model="test-model", input="one two three", instructions="Hi.")
    assert response.output_text == "one two three " and response.status == "completed"
    assert _last_chat(up)["messages"][0] == {"role": "system", "content": "Hi."}
    with oai.responses.stream(model="test-model", input="four five") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert deltas == ["four ", "five "] and final.output_text == "four five "
    raw = oai.responses.with_raw_response.create(
        model="test-model", input="six", tools=[{"type": "web_search"}]
    )
    assert raw.headers["x-ails-dropped-tools"] == "web_search"
    assert "tools" not in _last_chat(up)


def test_previous_response_id_continues_for_its_owner_only(
    oai: openai.OpenAI, gw: Gateway, up: Upstream
) -> None:
    first = oai.responses.create(model="test-model", input="remember seven")
    second = oai.responses.create(
        model="test-model", input="and eight", previous_response_id=first.id
    )
    assert second.output_text == "and eight "
    assert _last_chat(up)["messages"] == [
        {"role": "user", "content": "remember seven"},
        {"role": "assistant", "content": "remember seven "},
        {"role": "user", "content": "and eight"},
    ]
    assert oai.responses.retrieve(second.id).output_text == "and eight "
    other = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=OTHER, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        other.responses.create(model="test-model", input="x", previous_response_id=first.id)
    assert info.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id)
    oai.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)
    # A streamed answer is stored too; store=false keeps nothing.
    with oai.responses.stream(model="test-model", input="nine") as s:
        streamed = s.get_final_response()
    assert oai.responses.retrieve(streamed.id).output_text == "nine "
    unstored = oai.responses.create(model="test-model", input="ten", store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(unstored.id)


def test_responses_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="test-model", input="x", max_output_tokens=0)
    assert info.value.param == "max_output_tokens"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=oai.base_url, api_key="not-the-key-at-all", max_retries=0
        ).responses.create(model="test-model", input="x")


def test_responses_mid_stream_failure_is_response_failed(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="midstream_error:2", input="x") as s:
        events = list(s)
    last = events[-1]
    assert last.type == "response.failed" and last.response.status == "failed"
    assert last.response.error is not None
    assert "upstream exploded" in last.response.error.message
    texts = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(texts) == 2


def test_agents_own_model_names_reach_a_backend_through_a_wildcard_alias(
    claude: anthropic.Anthropic, gw: Gateway, up: Upstream
) -> None:
    hi: Any = [{"role": "user", "content": "wild card"}]
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=hi)
    assert message.model == "claude-sonnet-4-5"  # the name asked for
    assert message.content[0].text == "wild card "  # type: ignore[union-attr]
    assert _last_chat(up)["model"] == "test-model"
    # The longest pattern wins; an exact name is never a pattern's.
    claude.messages.create(model="claude-opus-4-1", max_tokens=9, messages=hi)
    assert _last_chat(up)["model"] == "chunks:3"
    listed = requests.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                          timeout=10).json()  # fmt: skip
    names = {m["id"] for m in listed["data"]}
    assert "test-model" in names and not any("*" in n for n in names)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="gpt-5-codex", max_tokens=9, messages=hi)


def test_an_unknown_path_lists_the_endpoints(gw: Gateway) -> None:
    r = requests.post(f"{gw.url}/v1/nothing", json={}, timeout=10)
    error = r.json()["error"]
    assert r.status_code == 404 and error["code"] == "unknown_url"
    for endpoint in ("POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses",
                     "GET /v1/models", "POST /v1/embeddings"):  # fmt: skip
        assert endpoint in error["message"]


def test_count_tokens_is_an_estimate_that_grows_with_the_prompt(
    claude: anthropic.Anthropic,
) -> None:
    short: Any = [{"role": "user", "content": "hi"}]
    long: Any = [{"role": "user", "content": "hello there, " * 200}]
    raw = claude.messages.with_raw_response.count_tokens(model="test-model", messages=short)
    assert raw.headers["x-ails-token-count"] == "estimate"
    small = raw.parse().input_tokens
    tools: Any = [{"name": "f", "input_schema": {"type": "object"}}]
    big = claude.messages.count_tokens(model="test-model", messages=long, tools=tools)
    assert 0 < small < 20 and 500 < big.input_tokens < 1000
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=short)


@pytest.mark.parametrize(
    ("path", "body", "start", "first"),
    [("/v1/messages", {"max_tokens": 64}, b"event: message_start", b"event: content_block_delta"),
     ("/v1/responses", {"input": "hi", "store": False}, b"event: response.created",
      b"event: response.output_text.delta")],
)  # fmt: skip
def test_a_dialect_stream_sends_its_head_and_start_with_the_first_events(
    gw: Gateway, path: str, body: dict[str, Any], start: bytes, first: bytes
) -> None:
    """As on the chat path, the head and the opening events leave in one send
    with the first content: the upstream waits 300 ms before its first chunk,
    so a head or a ``message_start`` sent alone would be the whole first read."""
    if "input" not in body:
        body = {**body, "messages": [{"role": "user", "content": "hi"}]}
    payload = json.dumps({**body, "model": "keepalive:2:300", "stream": True}).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nanthropic-version: 2023-06-01\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + payload)
        got = sock.recv(1 << 16)
        rest = b"".join(iter(lambda: sock.recv(1 << 16), b""))
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    assert start in got and first in got, got
    assert rest.count(first) == 1 and rest.rstrip().endswith(b"0"), rest[-200:]


# -- a key's limits hold in every dialect -------------------------------------------------------


def _fresh_minute(need: float = 10.0) -> None:
    """Wait for the next minute (the limits' window) when fewer than ``need``
    seconds are left of this one."""
    left = 60 - time.time() % 60
    if left < need:
        time.sleep(left + 0.05)


def _dialect_call(g: Gateway, key: str, path: str, model: str, stream: bool) -> requests.Response:
    text = "a b c d e"  # the test upstream's usage: 5 prompt words + 5 echoed = 10 tokens
    body: dict[str, Any] = {"model": model, "stream": stream}
    if path == "/v1/messages":
        body |= {"max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    else:
        body |= {"input": text, "store": False}
    headers = {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    r = requests.post(f"{g.url}{path}", json=body, headers=headers, timeout=10)
    _ = r.content  # the whole stream
    return r


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_a_keys_tokens_per_minute_count_what_each_dialect_used(
    up: Upstream, path: str, stream: bool
) -> None:
    """``--tpm`` charges the tokens a Messages or Responses answer used, as
    it does a chat completion's: 20 a minute is two answers of 10, then 429."""
    key = "tpm-dialect-key-0123"
    args = ["--upstream", up.base_url, "--api-key", key, "--tpm", "20", "--max-retries", "0"]
    with Gateway(args) as g:
        _fresh_minute()
        answers = []
        for _ in range(3):
            answers.append(_dialect_call(g, key, path, "test-model", stream))
            time.sleep(FLUSH_S + 0.1)  # the tokens used are written in batches, soon after
        assert [r.status_code for r in answers] == [200, 200, 429], answers[-1].text
        assert answers[0].headers["x-ratelimit-limit-tokens"] == "20"
        if not stream:  # a whole answer's headers already count its own tokens
            assert answers[1].headers["x-ratelimit-remaining-tokens"] == "0"
        refusal = answers[2].json()
        if path == "/v1/messages":
            assert refusal["error"]["type"] == "rate_limit_error"
        else:
            assert refusal["error"]["code"] == "rate_limit_exceeded"


def test_a_keys_request_comes_back_when_the_backend_fails_in_each_dialect(up: Upstream) -> None:
    """A backend that fails before any output gives the request back to
    ``--rpm`` on the dialects too (as on chat, tests/test_doors.py)."""
    key = "rpm-dialect-key-0123"
    args = ["--upstream", up.base_url, "--api-key", key, "--rpm", "2", "--max-retries", "0"]
    with Gateway(args) as g:
        _fresh_minute()
        for path in ("/v1/messages", "/v1/responses"):
            for stream in (False, True):
                r = _dialect_call(g, key, path, "status:503", stream)
                assert r.status_code >= 500, (path, stream, r.status_code, r.text)
        statuses = [_dialect_call(g, key, "/v1/messages", "test-model", False).status_code
                    for _ in range(3)]  # fmt: skip
        assert statuses == [200, 200, 429]


def test_a_backend_s_malformed_tool_calls_are_left_out_in_each_dialect(
    claude: anthropic.Anthropic, oai: openai.OpenAI
) -> None:
    """Tool calls a backend sent that are not ones (``"function": "oops"``, a
    string, a name or an id that is a number) are left out of a Messages or
    Responses answer, whole or streamed; the text and the good call beside
    them come through (before, the translation raised mid-answer)."""
    hi: Any = [{"role": "user", "content": "hi"}]
    message = claude.messages.create(model="badcalls", max_tokens=20, messages=hi)
    with claude.messages.stream(model="badcalls", max_tokens=20, messages=hi) as s:
        streamed = s.get_final_message()
    for answer in (message, streamed):
        kinds = [block.type for block in answer.content]
        assert kinds == ["text", "tool_use"] and answer.stop_reason == "tool_use", answer
        call = answer.content[1]
        assert (call.name, call.input) == ("lookup", {"q": 1})  # type: ignore[union-attr]
    whole = oai.responses.create(model="badcalls", input="hi", store=False)
    with oai.responses.stream(model="badcalls", input="hi", store=False) as rs:
        final = rs.get_final_response()
    for response in (whole, final):
        assert response.output_text == "tok0 " and response.status == "completed"
        calls = [item for item in response.output if item.type == "function_call"]
        assert [(c.name, c.arguments, c.call_id) for c in calls] == [
            ("lookup", '{"q": 1}', "call_ok")
        ]
