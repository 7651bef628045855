"""``ails serve`` as a real subprocess in front of the test upstream, driven by
the official openai SDK (sync and async) and by raw HTTP.

One gateway per configuration, module-scoped: ``gw`` (one open upstream, fast
timeouts, no retries) and ``multi`` (several upstreams: fallback, retries, a
dead one, one that refuses the gateway's key).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import openai
import pytest

from gateway_proc import Gateway, StatusUpstream
from upstream import CREATED, Upstream

HELLO = [{"role": "user", "content": "Hello, who are you?"}]
MODELS = [
    "test-model",
    "chunks:40",
    "status:429:retry-after=7",
    "status:500",
    "status:400",
    "stall:3000",
    "headerstall:3000",
    "cut:3",
    "midstream_error:2",
    "badjson:2",
    "badtype:3",
    "endless",
    "nonsse",
    "reset",
    "flaky:1:500",
    "shared-model",
    "queued:250",
    "queued:soon",
]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=list(MODELS)) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream) -> Iterator[Gateway]:
    args = [
        "--upstream", up.base_url,
        "--alias", "gpt-x=test-model",
        "--max-retries", "0",
        "--idle-timeout", "0.5",
        "--timeout", "1.5",
        "--max-messages", "50",
        "--max-body-bytes", "65536",
    ]  # fmt: skip
    g = Gateway(args).start()
    try:
        yield g
    finally:
        assert g.stop() == 0, g.log  # SIGTERM: a graceful, clean exit
    assert "ails: shutting down" in g.log


@pytest.fixture
def upr(up: Upstream) -> Upstream:
    up.reset()
    return up


def sdk(g: Gateway, key: str = "none", **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.base_url, api_key=key, max_retries=0, **kw)


def asdk(g: Gateway, key: str = "none") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.base_url, api_key=key, max_retries=0)


def raw_request(
    g: Gateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP exchange (no SDK in between)."""
    parts = urlsplit(g.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(g: Gateway, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(
        g, "POST", "/v1/chat/completions", data, {"Content-Type": "application/json", **headers}
    )


def error_of(body: bytes) -> dict[str, Any]:
    """The OpenAI error object of a response body (asserting its shape)."""
    obj = json.loads(body)
    assert set(obj) == {"error"}
    err = obj["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    return err  # type: ignore[no-any-return]


def events_of(body: bytes) -> list[str]:
    """The data of each SSE event, checking every event is one ``data:`` line."""
    text = body.decode()
    assert text.endswith("data: [DONE]\n\n")
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        out.append(block[len("data: ") :])
    return out


def assert_serves(g: Gateway, model: str = "test-model") -> None:
    reply = sdk(g).chat.completions.create(model=model, messages=HELLO)
    assert reply.choices[0].message.content == "Hello, who are you? "


# -- the official SDK -------------------------------------------------------------------


def test_sdk_non_stream_text_usage_and_headers(gw: Gateway, upr: Upstream) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(model="test-model", messages=HELLO)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello, who are you? "
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert len(raw.headers["x-request-id"]) == 32
    assert 0 <= float(raw.headers["x-ails-overhead-ms"]) < 1000
    (req,) = upr.requests
    assert req.body["stream"] is False and req.body["model"] == "test-model"


def test_sdk_stream_with_usage(gw: Gateway) -> None:
    stream = sdk(gw).chat.completions.create(
        model="test-model", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, who are you? "
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_stream_without_include_usage_sends_no_usage(gw: Gateway) -> None:
    status, headers, body = post_json(gw, {"model": "chunks:40", "messages": HELLO, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    data = events_of(body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len(chunks) == 41 and all("usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "".join(
        f"tok{i} " for i in range(40)
    )


async def test_async_sdk_stream_and_non_stream(gw: Gateway) -> None:
    client = asdk(gw)
    try:
        reply = await client.chat.completions.create(model="gpt-x", messages=HELLO)
        assert reply.choices[0].message.content == "Hello, who are you? "
        stream = await client.chat.completions.create(model="gpt-x", messages=HELLO, stream=True)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        assert "".join(p or "" for p in pieces) == "Hello, who are you? "
    finally:
        await client.close()


def test_models_list_names_backends_not_urls(gw: Gateway, up: Upstream) -> None:
    listed = sdk(gw).models.list().data
    models = {m.id: m.owned_by for m in listed}
    assert models["test-model"] == "upstream1"
    assert models["gpt-x"] == "upstream1"
    assert set(MODELS) <= set(models)
    # ``created`` is the upstream's own, for its models and the aliases of them.
    assert {m.created for m in listed} == {CREATED}
    status, _, body = raw_request(gw, "GET", "/v1/models")
    assert status == 200 and str(up.port).encode() not in body and b"127.0.0.1" not in body


def test_one_model_is_retrieved_by_name(gw: Gateway) -> None:
    model = sdk(gw).models.retrieve("test-model")
    assert (model.id, model.owned_by, model.object) == ("test-model", "upstream1", "model")
    assert model.created == CREATED
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gw).models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert "no-such-model" in info.value.message


def test_health_and_openapi(gw: Gateway) -> None:
    status, headers, body = raw_request(gw, "GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"} and headers["x-request-id"]
    status, _, body = raw_request(gw, "GET", "/openapi.json")
    doc = json.loads(body)
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/v1/responses/{id}",
        "/v1/models",
        "/v1/models/{model}",
        "/health",
        "/ready",
        "/openapi.json",
    }
    assert set(doc["paths"]["/v1/responses/{id}"]) == {"get", "delete"}
    assert set(doc["paths"]["/v1/chat/completions"]) == {"post"}
    schema = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # What the document calls required is exactly what the server refuses to do without.
    full = {"model": "test-model", "messages": HELLO}
    for field in full:
        partial = {k: v for k, v in full.items() if k != field}
        status, _, body = post_json(gw, partial)
        assert status == 400 and error_of(body)["code"] == "missing_required_parameter"
        assert error_of(body)["param"] == field
    assert sorted(schema["required"]) == sorted(full)
    assert post_json(gw, full)[0] == 200


def test_request_fields_pass_through_untouched(gw: Gateway, upr: Upstream) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    content = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    sdk(gw).chat.completions.create(
        model="test-model",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": content}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="auto",
        response_format={"type": "json_object"},
        stop=["\n\n", "END"],
        seed=7,
        n=1,
        user="u-1",
        temperature=0.3,
        extra_body={"top_k": 5, "vendor_thing": {"nested": [1, None, "x"]}},
    )
    (req,) = upr.requests
    body = req.body
    assert body["tools"] == tools and body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert body["stop"] == ["\n\n", "END"] and body["seed"] == 7 and body["n"] == 1
    assert body["user"] == "u-1" and body["temperature"] == 0.3
    assert body["messages"][1]["content"] == content
    assert body["top_k"] == 5 and body["vendor_thing"] == {"nested": [1, None, "x"]}


def test_request_id_is_echoed_and_logged_without_secrets(gw: Gateway) -> None:
    status, headers, _ = post_json(
        gw,
        {"model": "test-model", "messages": HELLO},
        **{"X-Request-Id": "my-req.42", "Authorization": "Bearer sekrit-client-token"},
    )
    assert status == 200 and headers["x-request-id"] == "my-req.42"
    assert gw.wait_for_log("rid=my-req.42")
    line = next(ln for ln in gw.lines if "rid=my-req.42" in ln)
    assert "POST /v1/chat/completions 200" in line and "127.0.0.1" in line
    assert "sekrit" not in gw.log
    # An id that is not sane is replaced, not echoed.
    _, headers, _ = raw_request(gw, "GET", "/health", headers={"X-Request-Id": "a b/c" * 30})
    assert len(headers["x-request-id"]) == 32 and headers["x-request-id"].isalnum()


def test_naive_line_reader_survives_data_colon_in_text(gw: Gateway) -> None:
    status, _, body = post_json(
        gw, {"model": "test-model", "stream": True, "messages": [{"role": "user", "content": (
            "say data: twice data: ok")}]}
    )  # fmt: skip
    assert status == 200
    text = ""
    for line in body.splitlines():  # the seed's reader, in bytes
        if b"content" in line:
            chunk = json.loads(line.decode().replace("data: ", ""))
            text += chunk["choices"][0]["delta"].get("content") or ""
    assert text == "say data: twice data: ok "


def test_concurrent_streams_hold_up(gw: Gateway) -> None:
    async def one(session: aiohttp.ClientSession) -> str:
        body = {"model": "chunks:40", "messages": HELLO, "stream": True}
        async with session.post(f"{gw.base_url}/chat/completions", json=body) as resp:
            assert resp.status == 200
            return (await resp.read()).decode()

    async def main() -> list[str]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(one(session) for _ in range(64)))

    results = asyncio.run(main())
    assert all(r.count("data: ") == 42 and r.endswith("data: [DONE]\n\n") for r in results)


# -- hostile bodies ----------------------------------------------------------------------

BAD_BODIES: list[tuple[str, Any, int, str | None]] = [
    ("invalid json", b'{"model": "test-model", "messages": [', 400, "invalid_json"),
    ("invalid utf-8", b'{"model": "\xff\xfe", "messages": []}', 400, "invalid_json"),
    ("not an object", b"[1, 2, 3]", 400, "invalid_json"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 413, "body_too_large"),
    ("deep nesting small", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "invalid_json"),
    ("model missing", {"messages": HELLO}, 400, "missing_required_parameter"),
    ("model wrong type", {"model": 5, "messages": HELLO}, 400, "invalid_type"),
    ("model empty", {"model": "", "messages": HELLO}, 400, "invalid_value"),
    ("messages missing", {"model": "test-model"}, 400, "missing_required_parameter"),
    ("messages a string", {"model": "test-model", "messages": "hi"}, 400, "invalid_type"),
    ("messages empty", {"model": "test-model", "messages": []}, 400, "empty_array"),
    ("message not object", {"model": "test-model", "messages": [1]}, 400, "invalid_type"),
    ("role missing", {"model": "test-model", "messages": [{"content": "x"}]}, 400,
     "missing_required_parameter"),
    ("role wrong type", {"model": "test-model", "messages": [{"role": 1}]}, 400, "invalid_type"),
    ("content a number", {"model": "test-model", "messages": [{"role": "user", "content": 3}]},
     400, "invalid_type"),
    ("too many messages", {"model": "test-model", "messages": HELLO * 51}, 400,
     "too_many_messages"),
    ("stream a string", {"model": "test-model", "messages": HELLO, "stream": "yes"}, 400,
     "invalid_type"),
    ("max_tokens zero", {"model": "test-model", "messages": HELLO, "max_tokens": 0}, 400,
     "invalid_value"),
    ("max_tokens bool", {"model": "test-model", "messages": HELLO, "max_tokens": True}, 400,
     "invalid_type"),
    ("temperature text", {"model": "test-model", "messages": HELLO, "temperature": "hot"}, 400,
     "invalid_type"),
    ("temperature high", {"model": "test-model", "messages": HELLO, "temperature": 2.5}, 400,
     "invalid_value"),
    ("top_p high", {"model": "test-model", "messages": HELLO, "top_p": 1.5}, 400, "invalid_value"),
    ("n zero", {"model": "test-model", "messages": HELLO, "n": 0}, 400, "invalid_value"),
    ("stop a number", {"model": "test-model", "messages": HELLO, "stop": 5}, 400, "invalid_type"),
    ("stop mixed list", {"model": "test-model", "messages": HELLO, "stop": ["a", 1]}, 400,
     "invalid_type"),
    ("stream_options text", {"model": "test-model", "messages": HELLO, "stream_options": "x"},
     400, "invalid_type"),
    ("unknown model", {"model": "no-such-model", "messages": HELLO}, 404, "model_not_found"),
    ("over the size limit", {"model": "test-model", "messages": [
        {"role": "user", "content": "x" * 70_000}]}, 413, "body_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_openai_errors(
    gw: Gateway, upr: Upstream, body: Any, status: int, code: str | None
) -> None:
    got, headers, raw = post_json(gw, body)
    assert got == status, raw
    assert headers["content-type"].startswith("application/json")
    err = error_of(raw)
    if code is not None:
        assert err["code"] == code
    assert headers["x-request-id"]
    assert upr.requests == []  # refused before anything reached the upstream


def test_other_refusals_are_json_too(gw: Gateway) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = raw_request(gw, "POST", "/v1/chat/completions", b"model=x", form)
    assert status == 415 and error_of(body)["type"] == "invalid_request_error"
    status, _, body = raw_request(gw, "GET", "/v1/nothing")
    assert status == 404 and error_of(body)["code"] == "unknown_url"
    status, headers, body = raw_request(gw, "GET", "/v1/chat/completions")
    assert status == 405 and error_of(body) and "POST" in headers["allow"]


def test_chunked_body_over_the_limit_is_413(gw: Gateway) -> None:
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        body = iter([b'{"model":"test-model","messages":[{"role":"user","content":"'] + [
            b"x" * 8192 for _ in range(10)
        ] + [b'"}]}'])  # fmt: skip
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=body,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 413 and error_of(resp.read())["code"] == "body_too_large"
    finally:
        conn.close()


def test_sdk_exception_classes_for_client_errors(gw: Gateway) -> None:
    client = sdk(gw)
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert nf.value.status_code == 404 and "no-such-model" in nf.value.message
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(model="test-model", messages=HELLO, temperature=9)
    assert br.value.param == "temperature"


# -- upstream faults ------------------------------------------------------------------------


def test_upstream_429_is_429_with_retry_after(gw: Gateway) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        sdk(gw).chat.completions.create(model="status:429:retry-after=7", messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert "scripted 429" in info.value.message
    assert_serves(gw)


def test_upstream_500_is_a_5xx_and_400_keeps_its_message(gw: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        sdk(gw).chat.completions.create(model="status:500", messages=HELLO, stream=True)
    assert info.value.status_code == 502 and "scripted 500" in info.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        sdk(gw).chat.completions.create(model="status:400", messages=HELLO)
    assert "scripted 400" in bad.value.message
    assert_serves(gw)


@pytest.mark.parametrize("stream", [False, True])
def test_stalled_upstream_is_504(gw: Gateway, stream: bool) -> None:
    model = "headerstall:3000" if stream else "stall:3000"
    started = time.monotonic()
    status, _, body = post_json(gw, {"model": model, "messages": HELLO, "stream": stream})
    assert status == 504 and error_of(body)["type"] == "server_error"
    assert time.monotonic() - started < 2.5
    assert_serves(gw)


@pytest.mark.parametrize("model", ["cut:3", "midstream_error:2", "stall:3000", "badjson:2"])
def test_failure_mid_stream_ends_with_an_error_event(gw: Gateway, model: str) -> None:
    status, _, body = post_json(gw, {"model": model, "messages": HELLO, "stream": True})
    assert status == 200
    data = events_of(body)
    assert data[-1] == "[DONE]"
    err = json.loads(data[-2])["error"]
    assert err["message"] and err["type"] and err["code"]
    assert all("error" not in json.loads(d) for d in data[:-2])
    with pytest.raises(openai.APIError) as info:
        for _ in sdk(gw).chat.completions.create(model=model, messages=HELLO, stream=True):
            pass
    assert isinstance(info.value.body, dict) and info.value.body["code"] == err["code"]
    assert info.value.message.startswith("upstream1: ")
    assert_serves(gw)


def test_a_chunk_with_a_field_of_the_wrong_type_is_forwarded_as_sent(
    gw: Gateway, up: Upstream
) -> None:
    # The gateway checks each chunk's JSON and reads only what it must (finish
    # reasons, usage, errors): a field it does not read goes through as any
    # proxy would pass it, where only a syntax error ends the stream.
    body = {"model": "badtype:3", "messages": HELLO, "stream": True}
    status, _, got = post_json(gw, body)
    assert status == 200
    data = events_of(got)
    assert [json.loads(d).get("error") for d in data[:-1]] == [None] * (len(data) - 1)
    assert json.loads(data[1])["choices"][0]["delta"] == {"content": 5}
    url = urlsplit(up.base_url)
    upstream = http.client.HTTPConnection(url.netloc)
    headers = {"Content-Type": "application/json"}
    upstream.request("POST", f"{url.path}/chat/completions", json.dumps(body), headers)
    assert got == upstream.getresponse().read()  # the upstream's own bytes

    status, _, got = post_json(gw, {**body, "model": "badjson:2"})
    assert status == 200
    data = events_of(got)
    assert data[-1] == "[DONE]" and json.loads(data[-2])["error"]["code"] == "invalid_chunk"


@pytest.mark.parametrize("model", ["nonsse", "reset"])
def test_broken_upstream_answers_are_502(gw: Gateway, model: str) -> None:
    for stream in (False, True):
        status, _, body = post_json(gw, {"model": model, "messages": HELLO, "stream": stream})
        assert status == 502, body
        assert error_of(body)["type"] == "server_error"
    assert_serves(gw)


async def test_client_disconnect_cancels_the_upstream_stream(gw: Gateway, upr: Upstream) -> None:
    body = {"model": "endless", "messages": HELLO, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.base_url}/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        resp.close()  # the client goes away mid-stream
    assert await upr.wait_for_disconnects_async(1, timeout=1.0)


def test_signed_body_without_allow_signed_is_refused(gw: Gateway) -> None:
    from ails.signing import signature_fields

    body = {"model": "test-model", "messages": HELLO}
    body |= signature_fields(HELLO[-1]["content"], now_ms=int(time.time() * 1000))
    status, _, raw = post_json(gw, body)
    assert status == 401 and error_of(raw)["code"] == "signed_not_allowed"
    assert "--allow-signed" in error_of(raw)["message"]


# -- several upstreams ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi(up: Upstream) -> Iterator[tuple[Gateway, StatusUpstream, Upstream]]:
    failing = StatusUpstream(["shared-model"], 500).start()
    refusing = StatusUpstream(["auth-model"], 401).start()
    hanging = StatusUpstream(["hang-model"], 0).start()
    doomed = Upstream(models=["gone-model"]).start()
    args = [
        "--upstream", failing.base_url,
        "--upstream", refusing.base_url,
        "--upstream", doomed.base_url,
        "--upstream", up.base_url,
        "--upstream", hanging.base_url,
        "--upstream-key", "gateway-upstream-key-0001",
        "--max-retries", "1",
        "--models-refresh", "0",
        "--timeout", "5",
    ]  # fmt: skip
    try:
        with Gateway(args) as g:
            doomed.stop()  # listed at startup, refusing connections from now on
            yield g, hanging, up
    finally:
        failing.stop()
        refusing.stop()
        hanging.stop()


def test_fallback_to_the_next_upstream_that_lists_the_model(
    multi: tuple[Gateway, StatusUpstream, Upstream],
) -> None:
    g, _, up = multi
    up.reset()
    started = time.monotonic()
    reply = sdk(g).chat.completions.create(model="shared-model", messages=HELLO)
    assert reply.choices[0].message.content == "Hello, who are you? "
    assert time.monotonic() - started >= 0.3  # upstream1 was tried, retried after a backoff
    assert len(up.requests) == 1
    assert up.requests[0].headers["authorization"] == "Bearer gateway-upstream-key-0001"
    owners = {m.id: m.owned_by for m in sdk(g).models.list()}
    assert owners["shared-model"] == "upstream1" and owners["gone-model"] == "upstream3"


def test_retry_before_the_first_byte(multi: tuple[Gateway, StatusUpstream, Upstream]) -> None:
    g, _, up = multi
    up.reset()
    chunks = list(sdk(g).chat.completions.create(model="flaky:1:500", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "tok0 tok1 tok2 "
    assert len(up.requests) == 2


def test_upstream_refusing_connections_is_502(
    multi: tuple[Gateway, StatusUpstream, Upstream],
) -> None:
    g, _, _ = multi
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            sdk(g).chat.completions.create(model="gone-model", messages=HELLO, stream=stream)
        assert info.value.status_code == 502
        assert "upstream3" in info.value.message
        assert "127.0.0.1" not in info.value.message  # where an upstream lives is not told
    assert_serves(g)


def test_upstream_refusing_our_key_is_502_and_never_shows_it(
    multi: tuple[Gateway, StatusUpstream, Upstream],
) -> None:
    g, _, _ = multi
    with pytest.raises(openai.InternalServerError) as info:
        sdk(g).chat.completions.create(model="auth-model", messages=HELLO)
    assert info.value.status_code == 502
    assert "credentials" in info.value.message
    assert_serves(g)
    g.wait_for_log("POST /v1/chat/completions 200")
    assert "gateway-upstream-key-0001" not in g.log
    _, _, body = raw_request(g, "GET", "/v1/models")
    assert b"gateway-upstream-key" not in body


def test_a_model_added_upstream_later_is_found(
    multi: tuple[Gateway, StatusUpstream, Upstream],
) -> None:
    g, _, up = multi
    up.models.append("late-model")
    try:
        reply = sdk(g).chat.completions.create(model="late-model", messages=HELLO)
        assert reply.choices[0].message.content == "Hello, who are you? "
    finally:
        up.models.remove("late-model")


async def test_client_disconnect_cancels_the_upstream_request(
    multi: tuple[Gateway, StatusUpstream, Upstream],
) -> None:
    g, hanging, _ = multi
    before = hanging.cancelled
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(asyncio.TimeoutError):
            body = {"model": "hang-model", "messages": HELLO}
            async with session.post(f"{g.base_url}/chat/completions", json=body) as resp:
                await resp.read()

    # Long before the gateway's own 5 s limit: it was the client leaving.
    def cancelled() -> bool:
        deadline = time.monotonic() + 1.0
        while hanging.cancelled == before and time.monotonic() < deadline:
            time.sleep(0.01)
        return hanging.cancelled == before + 1

    assert await asyncio.to_thread(cancelled)


def test_no_request_here_got_a_500(
    gw: Gateway, multi: tuple[Gateway, StatusUpstream, Upstream]
) -> None:
    """Every request this module made, hostile ones included, got a deliberate status."""
    for g in (gw, multi[0]):
        statuses = re.findall(r" (?:GET|POST|PUT|HEAD) \S+ (\d{3}) ", g.log)
        assert statuses and "500" not in statuses
        assert "Traceback" not in g.log


def test_a_clean_shutdown_writes_every_buffered_access_line_first(up: Upstream) -> None:
    # Access lines wait up to 0.1 s in a buffer (server/logsink.py); SIGTERM
    # right after the answers must not lose them, nor put them after the goodbye.
    g = Gateway(["--upstream", up.base_url]).start()
    try:
        rids = []
        for _ in range(3):
            status, headers, _ = post_json(g, {"model": "test-model", "messages": HELLO})
            assert status == 200
            rids.append(headers["x-request-id"])
    finally:
        assert g.stop() == 0, g.log
    bye = next(i for i, ln in enumerate(g.lines) if "ails: shutting down" in ln)
    for rid in rids:
        at = [i for i, ln in enumerate(g.lines) if f"rid={rid} " in ln]
        assert at and at[0] < bye, g.log


def test_an_upstream_gateways_queue_time_is_passed_on(gw: Gateway) -> None:
    """In a chain of gateways (this one in front of an ``ails serve`` whose
    model was busy), a whole answer says how long it waited there; a value
    that is not a whole number of milliseconds is not passed on."""
    create = sdk(gw).chat.completions.with_raw_response.create
    hi: Any = [{"role": "user", "content": "hi"}]
    said = {m: create(model=m, messages=hi).headers.get("x-ails-queue-ms")
            for m in ("queued:250", "queued:soon", "test-model")}  # fmt: skip
    assert said == {"queued:250": "250", "queued:soon": None, "test-model": None}
