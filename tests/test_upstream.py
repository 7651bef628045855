"""The test upstream itself, driven with a plain ``aiohttp.ClientSession``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ails.signing import format_timestamp, sign
from upstream import CREATED, Upstream

MESSAGES = [{"role": "user", "content": "hello there world"}]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


def chat_body(model: str, *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, **extra}


async def read_lines(resp: aiohttp.ClientResponse) -> list[str]:
    """The SSE body, line by line, without line terminators."""
    return [line.decode("utf-8").rstrip("\r\n") async for line in resp.content]


def data_of(lines: list[str]) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def chunks_of(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(d) for d in data_of(lines) if d != "[DONE]"]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def post(
    session: aiohttp.ClientSession, up: Upstream, body: Any, **kw: Any
) -> aiohttp.ClientResponse:
    return await session.post(f"{up.base_url}/chat/completions", json=body, **kw)


async def test_models_list(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{upstream.base_url}/models") as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "object": "list",
            "data": [
                {"id": "test-model", "object": "model", "created": CREATED, "owned_by": "upstream"}
            ],
        }


async def test_plain_model_echoes_as_stream(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    async with await post(session, upstream, chat_body("gpt-3.5-turbo")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        lines = await read_lines(resp)
    data = data_of(lines)
    assert data[-1] == "[DONE]"
    chunks = chunks_of(lines)
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["id"] == "chatcmpl-test"
    assert first["created"] == 1700000000
    assert first["model"] == "gpt-3.5-turbo"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "hello "}
    assert content_of(chunks) == "hello there world "
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)


async def test_non_stream_has_content_and_usage(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    async with await post(session, upstream, chat_body("chunks:3", stream=False)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_include_usage_adds_usage_chunk(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    body = chat_body("chunks:4", stream_options={"include_usage": True})
    async with await post(session, upstream, body) as resp:
        lines = await read_lines(resp)
    assert data_of(lines)[-1] == "[DONE]"
    chunks = chunks_of(lines)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_cuts_with_length(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    async with await post(session, upstream, chat_body("chunks:10", max_tokens=2)) as resp:
        chunks = chunks_of(await read_lines(resp))
    assert content_of(chunks) == "tok0 tok1 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_status_429_with_retry_after(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    model = "status:429:retry-after=Wed, 21 Oct 2015 07:28:00 GMT:retry-after-ms=1500"
    async with await post(session, upstream, chat_body(model)) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
        assert resp.headers["retry-after-ms"] == "1500"
        body = await resp.json()
    assert body["error"]["message"] == "scripted 429"
    assert body["error"]["param"] is None
    async with await post(session, upstream, chat_body("status:503:retry-after=1")) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"


async def test_flaky_counts_attempts_until_reset(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    statuses = []
    for _ in range(3):
        async with await post(session, upstream, chat_body("flaky:2:502")) as resp:
            statuses.append(resp.status)
            await resp.read()
    assert statuses == [502, 502, 200]
    upstream.reset()
    assert upstream.requests == []
    async with await post(session, upstream, chat_body("flaky:2:502")) as resp:
        assert resp.status == 502


async def test_cut_truncates_the_stream(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    async with await post(session, upstream, chat_body("cut:2")) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert upstream.disconnects == 0  # our own abort is not a client going away


async def test_reset_drops_connection_before_headers(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, upstream, chat_body("reset"))


@pytest.mark.parametrize(
    ("model", "content_type", "text"),
    [
        ("nonsse", "application/json", '{"hello":"world"}'),
        ("html", "text/html", "<html>oops</html>"),
    ],
)
async def test_non_sse_answers_to_a_stream_request(
    upstream: Upstream, session: aiohttp.ClientSession, model: str, content_type: str, text: str
) -> None:
    async with await post(session, upstream, chat_body(model)) as resp:
        assert resp.status == 200
        assert resp.content_type == content_type
        assert await resp.text() == text


@pytest.mark.parametrize(
    ("model", "last_data", "has_finish"),
    [
        ("nodone:2", None, False),
        ("finishnodone:2", None, True),
        ("midstream_error:2", "[DONE]", False),
        ("badjson:2", "{not json", False),
    ],
)
async def test_stream_endings(
    upstream: Upstream,
    session: aiohttp.ClientSession,
    model: str,
    last_data: str | None,
    has_finish: bool,
) -> None:
    async with await post(session, upstream, chat_body(model)) as resp:
        data = data_of(await read_lines(resp))
    if last_data is not None:
        assert data[-1] == last_data
    else:
        assert "[DONE]" not in data
    parsed = [json.loads(d) for d in data if d.startswith('{"id"')]
    assert content_of(parsed) == "tok0 tok1 "
    assert any(c["choices"][0]["finish_reason"] for c in parsed) == has_finish
    if model.startswith("midstream_error"):
        assert json.loads(data[-2])["error"]["code"] == "boom"


async def test_split_writes_bytes_of_utf8(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    async with await post(session, upstream, chat_body("split:2")) as resp:
        pieces = [piece async for piece in resp.content.iter_any()]
    raw = b"".join(pieces)
    assert len(pieces) > 1
    lines = raw.decode("utf-8").split("\n")
    chunks = [json.loads(d) for d in data_of(lines) if d != "[DONE]"]
    assert content_of(chunks) == "привет0 привет1 "
    assert data_of(lines)[-1] == "[DONE]"


async def test_crlf_and_keepalive_and_invalid_utf8(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    async with await post(session, upstream, chat_body("crlf:2")) as resp:
        raw = await resp.read()
    assert raw.endswith(b"data: [DONE]\r\n\r\n")
    assert b"\n\n" not in raw.replace(b"\r\n", b"")
    async with await post(session, upstream, chat_body("keepalive:2:10")) as resp:
        raw = await resp.read()
    assert raw.startswith(b": keep-alive\n\ndata: ")
    assert raw.count(b": keep-alive\n\n") == 2
    async with await post(session, upstream, chat_body("invalid_utf8:3")) as resp:
        raw = await resp.read()
    assert b'"content":"tok1 \xff\xfe"' in raw


async def test_slow_and_big(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    start = time.monotonic()
    arrivals: list[float] = []
    async with await post(session, upstream, chat_body("slow:3:50")) as resp:
        async for line in resp.content:
            if line.startswith(b'data: {"id"') and b'"content"' in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] >= 0.09
    async with await post(session, upstream, chat_body("big:70000", stream=False)) as resp:
        body = await resp.json()
    assert body["choices"][0]["message"]["content"] == "x" * 70000


async def test_api_key_enforced() -> None:
    with Upstream(api_key="sk-test") as up:
        async with aiohttp.ClientSession() as s:
            async with await post(s, up, chat_body("chunks:1")) as resp:
                assert resp.status == 401
                err = (await resp.json())["error"]
            assert err["code"] == "invalid_api_key"
            assert err["type"] == "invalid_request_error"
            assert err["param"] is None
            wrong = {"Authorization": "Bearer nope"}
            async with await post(s, up, chat_body("chunks:1"), headers=wrong) as resp:
                assert resp.status == 401
            good = {"Authorization": "Bearer sk-test"}
            async with await post(s, up, chat_body("chunks:1"), headers=good) as resp:
                assert resp.status == 200
                assert data_of(await read_lines(resp))[-1] == "[DONE]"
            async with s.get(f"{up.base_url}/models") as resp:
                assert resp.status == 401
            async with s.get(f"{up.base_url}/models", headers=good) as resp:
                assert resp.status == 200
        assert len(up.requests) == 3


def signed_body(content: str, *, now_ms: int | None = None) -> dict[str, Any]:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    t = format_timestamp(now)
    d = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    return {
        "model": "chunks:2",
        "messages": [{"role": "user", "content": content}],
        "stream": True,
        "d": d,
        "t": t,
        "s": sign(t, content),
    }


async def test_signed_upstream(signed_upstream: Upstream, session: aiohttp.ClientSession) -> None:
    free = {"Authorization": "Bearer free"}
    async with await post(session, signed_upstream, signed_body("hi"), headers=free) as resp:
        assert resp.status == 200
        assert data_of(await read_lines(resp))[-1] == "[DONE]"

    bad = signed_body("hi")
    bad["s"] = "0" * 64
    async with await post(session, signed_upstream, bad, headers=free) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "signature_invalid"

    stale = signed_body("hi", now_ms=int(time.time() * 1000) - 3_600_000)
    async with await post(session, signed_upstream, stale, headers=free) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "signature_stale"

    unsigned = chat_body("chunks:2")
    async with await post(session, signed_upstream, unsigned, headers=free) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "signature_malformed"

    async with await post(session, signed_upstream, signed_body("hi")) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_invalid_json_and_bad_scenario_args(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    url = f"{upstream.base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=b"{nope", headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with await post(session, upstream, chat_body("chunks:abc")) as resp:
        assert resp.status == 400
    rec = upstream.requests[0]
    assert rec.raw == b"{nope"
    assert rec.body is None


async def test_requests_are_recorded(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    body = chat_body("chunks:1", temperature=0.5)
    headers = {"X-Custom": "Yes", "Authorization": "Bearer abc"}
    async with await post(session, upstream, body, headers=headers) as resp:
        await resp.read()
    assert len(upstream.requests) == 1
    rec = upstream.requests[0]
    assert rec.path == "/v1/chat/completions"
    assert rec.body == body
    assert json.loads(rec.raw) == body
    assert rec.model == "chunks:1"
    assert rec.headers["x-custom"] == "Yes"
    assert rec.headers["authorization"] == "Bearer abc"
    assert all(k == k.lower() for k in rec.headers)


async def test_disconnect_counted_when_client_leaves_endless(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    resp = await post(session, upstream, chat_body("endless"))
    seen = 0
    async for line in resp.content:
        if line.startswith(b"data: "):
            seen += 1
            if seen == 3:
                break
    resp.close()  # drops the connection mid-stream
    assert await upstream.wait_for_disconnects_async(1, timeout=2.0)
    assert upstream.disconnects == 1
    upstream.reset()
    assert upstream.disconnects == 0


async def test_disconnect_counted_while_the_handler_sleeps(
    upstream: Upstream, session: aiohttp.ClientSession
) -> None:
    resp = await post(session, upstream, chat_body("stall:5000"))
    assert (await resp.content.readline()).startswith(b"data: ")
    resp.close()
    assert await upstream.wait_for_disconnects_async(1, timeout=1.0)


def test_sync_client_disconnect_is_counted(upstream: Upstream) -> None:
    req = urllib.request.Request(
        f"{upstream.base_url}/chat/completions",
        data=json.dumps(chat_body("endless")).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.readline().startswith(b"data: ")
    assert upstream.wait_for_disconnects(1, timeout=1.0)


async def test_endless_obeys_max_tokens(upstream: Upstream, session: aiohttp.ClientSession) -> None:
    async with await post(session, upstream, chat_body("endless", max_tokens=4)) as resp:
        chunks = chunks_of(await read_lines(resp))
    assert content_of(chunks) == "tok0 tok1 tok2 tok3 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_sync_use_and_stop_aborts_in_flight_streams() -> None:
    up = Upstream().start()
    try:
        assert up.base_url == f"http://127.0.0.1:{up.port}/v1"
        req = urllib.request.Request(
            f"{up.base_url}/chat/completions",
            data=json.dumps(chat_body("chunks:2", stream=False)).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.load(resp)["choices"][0]["message"]["content"] == "tok0 tok1 "
        req = urllib.request.Request(
            f"{up.base_url}/chat/completions",
            data=json.dumps(chat_body("endless")).encode(),
            headers={"Content-Type": "application/json"},
        )
        endless = urllib.request.urlopen(req, timeout=5)
        assert endless.readline().startswith(b"data: ")
        start = time.monotonic()
    finally:
        up.stop()
    assert time.monotonic() - start < 1.0
    assert up.disconnects == 0  # a stop is not a client going away
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{up.base_url}/models", timeout=1)
    endless.close()


def test_cli_subprocess_prints_ready() -> None:
    script = Path(__file__).with_name("upstream.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY ")
        port = int(line.split()[1])
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "test-model"
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        if proc.stdout is not None:
            proc.stdout.close()
