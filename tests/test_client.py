"""The client library against the real test upstream on 127.0.0.1.

Every scenario is a real HTTP exchange: the upstream (tests/upstream.py) picks
its behaviour from the model name.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import ails
from ails.errors import (
    AuthFailed,
    BadRequest,
    ProtocolError,
    RateLimited,
    Timeout,
    UpstreamUnavailable,
)

HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture
def up(upstream_session: Any) -> Any:
    upstream_session.reset()
    return upstream_session


def client(up: Any, **kw: Any) -> ails.Client:
    kw.setdefault("max_retries", 0)
    return ails.Client(providers={"openai": {"base_url": up.base_url, "api_key": "k"}}, **kw)


def stream_text(c: ails.Client, model: str, **kw: Any) -> str:
    with c.chat.completions.create(model=model, messages=HELLO, stream=True, **kw) as s:
        return "".join(s.text())


# -- the seed's loop ------------------------------------------------------------


def test_seed_example_loop_streams_from_a_signed_server(signed_upstream: Any) -> None:
    messages = [{"role": "user", "content": "Hello, who are you?"}]
    out = []
    for token in ails.create_completion(
        model="gpt-3.5-turbo",
        messages=messages,
        provider="signed",
        base_url=signed_upstream.base_url,
        temperature=0.2,
    ):
        out.append(token)
    assert "".join(out) == "Hello, who are you? "
    assert len(out) == 4  # token by token, as the upstream sent them
    (req,) = signed_upstream.requests
    assert list(req.body) == ["model", "temperature", "stream", "messages", "d", "t", "s"]
    assert req.body["temperature"] == 0.2
    assert req.body["stream"] is True
    assert req.headers["authorization"] == "Bearer free"
    assert uuid.UUID(req.headers["client-id"]).version == 4
    assert req.headers["user-agent"] == f"ails/{ails.__version__}"
    assert b'","' in req.raw and b", " not in req.raw.split(b'"messages"')[0]


def test_signed_stale_timestamp_is_refused_with_its_code(
    signed_upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ails.providers.signed as signed

    monkeypatch.setattr(signed, "_now_ms", lambda: int(time.time() * 1000) - 3_600_000)
    with pytest.raises(AuthFailed) as info:
        list(
            ails.create_completion(
                "gpt-3.5-turbo",
                HELLO,
                provider="signed",
                base_url=signed_upstream.base_url,
                max_retries=0,
            )
        )
    assert info.value.status == 401
    assert info.value.code == "signature_stale"


def test_signed_retries_sign_afresh(signed_upstream: Any) -> None:
    text = "".join(
        ails.create_completion(
            "flaky:2:503",
            HELLO,
            provider="signed",
            base_url=signed_upstream.base_url,
            max_retries=2,
        )
    )
    assert text == "tok0 tok1 tok2 "
    sigs = [(r.body["t"], r.body["s"]) for r in signed_upstream.requests]
    assert len(sigs) == 3 and len(set(sigs)) == 3


def test_signed_provider_needs_a_base_url() -> None:
    with pytest.raises(ails.ConfigError, match="base_url"):
        list(ails.create_completion("gpt-3.5-turbo", HELLO, provider="signed"))


def test_params_are_introspected_like_the_seed() -> None:
    from ails.providers.signed import SignedProvider

    assert SignedProvider.params() == (
        "ails.providers.signed supports: (model: str, messages: list, temperature: float, "
        "stream: bool)"
    )


# -- streaming over the OpenAI protocol -------------------------------------------


def test_stream_yields_typed_chunks(up: Any) -> None:
    with client(up) as c:
        chunks = list(
            c.chat.completions.create(model="openai/chunks:20", messages=HELLO, stream=True)
        )
    texts = [ch.choices[0].delta.content for ch in chunks if ch.choices]
    assert "".join(t for t in texts if t) == "".join(f"tok{i} " for i in range(20))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].object == "chat.completion.chunk"


def test_include_usage_gives_a_usage_chunk(up: Any) -> None:
    with client(up) as c:
        chunks = list(
            c.chat.completions.create(
                model="openai/chunks:3",
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 3
    assert up.requests[0].body["stream_options"] == {"include_usage": True}


def test_non_stream_returns_a_completion(up: Any) -> None:
    with client(up) as c:
        done = c.chat.completions.create(model="openai/chunks:4", messages=HELLO, max_tokens=3)
    assert isinstance(done, ails.Completion)
    assert done.choices[0].message.content == "tok0 tok1 tok2 "
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3
    assert up.requests[0].body["stream"] is False
    assert up.requests[0].body["max_tokens"] == 3


def test_request_fields_pass_through_untouched(up: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    with client(up) as c:
        c.chat.completions.create(
            model="openai/chunks:1",
            messages=parts,
            tools=tools,
            tool_choice="auto",
            seed=7,
            user="u1",
            logit_bias={"50256": -100},
            extra_body={"top_k": 5},
        )
    body = up.requests[0].body
    assert body["tools"] == tools and body["tool_choice"] == "auto"
    assert body["messages"] == parts and body["seed"] == 7 and body["user"] == "u1"
    assert body["logit_bias"] == {"50256": -100} and body["top_k"] == 5
    assert up.requests[0].headers["authorization"] == "Bearer k"


@pytest.mark.parametrize("scenario", ["split:12", "crlf:12"])
def test_byte_splits_and_crlf_keep_every_character(up: Any, scenario: str) -> None:
    with client(up) as c:
        text = stream_text(c, f"openai/{scenario}")
    expected = (
        "".join(f"привет{i} " for i in range(12))
        if scenario.startswith("split")
        else ("".join(f"tok{i} " for i in range(12)))
    )
    assert text == expected


def test_keepalives_between_chunks_are_harmless(up: Any) -> None:
    with client(up, idle_timeout=2) as c:
        assert stream_text(c, "openai/keepalive:3:30") == "tok0 tok1 tok2 "


def test_big_chunk_and_invalid_utf8(up: Any) -> None:
    with client(up) as c:
        assert len(stream_text(c, "openai/big:300000")) == 300000
        assert "\ufffd" in stream_text(c, "openai/invalid_utf8:3")


def test_finish_reason_without_done_is_complete(up: Any) -> None:
    with client(up) as c:
        assert stream_text(c, "openai/finishnodone:2") == "tok0 tok1 "


# -- errors: typed, with the upstream's own words ---------------------------------


def test_bad_request_is_not_retried_and_keeps_the_message(up: Any) -> None:
    with client(up, max_retries=2) as c, pytest.raises(BadRequest) as info:
        stream_text(c, "openai/status:400")
    assert info.value.status == 400 and "scripted 400" in str(info.value)
    assert info.value.provider == "openai" and info.value.retryable is False
    assert isinstance(info.value.body, dict) and "error" in info.value.body
    assert len(up.requests) == 1


def test_server_errors_are_retried_then_raised(up: Any) -> None:
    with client(up, max_retries=1) as c, pytest.raises(UpstreamUnavailable) as info:
        stream_text(c, "openai/status:503")
    assert info.value.status == 503 and info.value.retryable
    assert len(up.requests) == 2


def test_flaky_upstream_recovers_within_retries(up: Any) -> None:
    with client(up, max_retries=2) as c:
        assert stream_text(c, "openai/flaky:1:500") == "tok0 tok1 tok2 "
    assert len(up.requests) == 2


def test_retry_after_is_honoured(up: Any) -> None:
    start = time.monotonic()
    with client(up, max_retries=1) as c, pytest.raises(RateLimited) as info:
        stream_text(c, "openai/status:429:retry-after=1")
    assert time.monotonic() - start >= 1.0
    assert info.value.status == 429 and info.value.retry_after == 1.0
    assert len(up.requests) == 2


def test_auth_failure(up: Any) -> None:
    from upstream import Upstream

    with (
        Upstream(api_key="right") as keyed,
        ails.Client(
            max_retries=0, providers={"openai": {"base_url": keyed.base_url, "api_key": "wrong"}}
        ) as c,
        pytest.raises(AuthFailed) as info,
    ):
        stream_text(c, "openai/chunks:1")
    assert info.value.status == 401 and info.value.code == "invalid_api_key"


def test_connection_refused_is_upstream_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "k"}
    with (
        ails.Client(max_retries=0, providers={"openai": settings}) as c,
        pytest.raises(UpstreamUnavailable, match="cannot reach"),
    ):
        stream_text(c, "openai/x")


@pytest.mark.parametrize(
    ("scenario", "error", "code"),
    [
        ("nodone:3", ProtocolError, "stream_truncated"),
        ("nonsse", ProtocolError, "not_event_stream"),
        ("html", ProtocolError, "not_event_stream"),
        ("badjson:2", ProtocolError, "invalid_chunk"),
        # Valid JSON, not a chunk ("content": 5): typed as it is used.
        ("badtype:3", ProtocolError, "invalid_chunk"),
        ("midstream_error:2", UpstreamUnavailable, "boom"),
    ],
)
def test_broken_streams_raise_never_truncate(
    up: Any, scenario: str, error: type[Exception], code: str
) -> None:
    with client(up, max_retries=2) as c, pytest.raises(error) as info:
        stream_text(c, f"openai/{scenario}")
    assert getattr(info.value, "code", None) == code
    assert len(up.requests) == 1  # never retried once the body started (or a non-SSE 200)


def test_cut_connection_mid_stream_raises(up: Any) -> None:
    got: list[str] = []
    with (
        client(up, max_retries=2) as c,
        pytest.raises((UpstreamUnavailable, ProtocolError)),
        c.chat.completions.create(model="openai/cut:3", messages=HELLO, stream=True) as s,
    ):
        got.extend(s.text())
    assert got == ["tok0 ", "tok1 ", "tok2 "]
    assert len(up.requests) == 1


# -- timeouts ----------------------------------------------------------------------


def test_idle_timeout_ignores_keepalive_comments(up: Any) -> None:
    start = time.monotonic()
    with client(up, idle_timeout=0.5) as c, pytest.raises(Timeout) as info:
        stream_text(c, "openai/pingonly:5")
    assert info.value.kind == "idle"
    assert 0.4 < time.monotonic() - start < 2.5


def test_idle_timeout_before_headers(up: Any) -> None:
    with client(up, idle_timeout=0.3) as c, pytest.raises(Timeout):
        stream_text(c, "openai/headerstall:3000")


def test_idle_timeout_mid_stream(up: Any) -> None:
    with client(up, idle_timeout=0.3) as c, pytest.raises(Timeout, match="after 1 chunks"):
        stream_text(c, "openai/stall:3000")


def test_total_timeout(up: Any) -> None:
    start = time.monotonic()
    with client(up, timeout=0.5, idle_timeout=5) as c, pytest.raises(Timeout) as info:
        stream_text(c, "openai/slow:100:50")
    assert info.value.kind == "total"
    assert time.monotonic() - start < 2.0


# -- fallback and early exit --------------------------------------------------------


def test_fallback_to_another_provider(up: Any, signed_upstream: Any) -> None:
    with ails.Client(
        max_retries=0,
        fallbacks=["signed/chunks:2"],
        providers={
            "openai": {"base_url": up.base_url, "api_key": "k"},
            "signed": {"base_url": signed_upstream.base_url},
        },
    ) as c:
        assert stream_text(c, "openai/status:502") == "tok0 tok1 "
    assert len(up.requests) == 1 and len(signed_upstream.requests) == 1


def test_breaking_out_closes_the_connection(up: Any) -> None:
    with client(up) as c:
        for n, _ in enumerate(
            c.chat.completions.create(model="openai/endless", messages=HELLO, stream=True).text()
        ):
            if n == 5:
                break
        deadline = time.monotonic() + 3
        while up.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert up.disconnects == 1


async def test_async_client_streams_and_cancels(up: Any) -> None:
    async with ails.AsyncClient(
        max_retries=0, providers={"openai": {"base_url": up.base_url, "api_key": "k"}}
    ) as c:
        s = await c.chat.completions.create(model="openai/chunks:5", messages=HELLO, stream=True)
        assert "".join([t async for t in s.text()]) == "tok0 tok1 tok2 tok3 tok4 "
        done = await c.chat.completions.create(model="openai/chunks:2", messages=HELLO)
        assert done.choices[0].message.content == "tok0 tok1 "

        async def read_forever() -> None:
            s = await c.chat.completions.create(model="openai/endless", messages=HELLO, stream=True)
            async for _ in s:
                pass

        task = asyncio.create_task(read_forever())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if up.disconnects:
                break
            await asyncio.sleep(0.02)
        assert up.disconnects == 1


def test_chunks_before_an_in_band_error_are_delivered(up: Any) -> None:
    got: list[str] = []
    with (
        client(up) as c,
        pytest.raises(UpstreamUnavailable, match="upstream exploded"),
        c.chat.completions.create(
            model="openai/midstream_error:3", messages=HELLO, stream=True
        ) as s,
    ):
        got.extend(s.text())
    assert "".join(got) == "tok0 tok1 tok2 "


def test_an_error_object_in_a_200_whole_answer_raises(up: Any) -> None:
    # The upstream answers a non-streamed request 200 with {"error": ...}: the
    # provider raises it (once, for the library and the gateway alike), where
    # it used to hand the library an empty Completion.
    with client(up) as c, pytest.raises(UpstreamUnavailable, match="upstream exploded") as info:
        c.chat.completions.create(model="openai/midstream_error:2", messages=HELLO)
    assert info.value.code == "boom"


def test_a_whole_answer_keeps_the_upstream_bytes(up: Any) -> None:
    async def go() -> tuple[bytes | None, str | None]:
        from ails.providers.openai import OpenAIProvider

        provider = OpenAIProvider(base_url=up.base_url, api_key="k")
        try:
            reply = await provider.reply("chunks:2", HELLO)
        finally:
            await provider.aclose()
        return reply.raw, reply.completion.choices[0].message.content  # type: ignore[return-value]

    raw, text = asyncio.run(go())
    assert raw is not None and b'"chat.completion"' in raw
    assert text == "tok0 tok1 "


def test_a_streamed_batch_keeps_each_chunk_text_as_received(up: Any) -> None:
    async def go() -> list[tuple[str | None, str | None]]:
        from ails.providers.base import raw_texts
        from ails.providers.openai import OpenAIProvider

        provider = OpenAIProvider(base_url=up.base_url, api_key="k")
        pairs: list[tuple[str | None, str | None]] = []
        try:
            stream = await provider.connect("chunks:2", HELLO)
            async for batch in stream:
                for text, chunk in zip(raw_texts(batch), batch, strict=True):
                    content = chunk.choices[0].delta.content if chunk.choices else None
                    pairs.append((text, content))
        finally:
            await provider.aclose()
        return pairs

    pairs = asyncio.run(go())
    assert [c for _, c in pairs][:2] == ["tok0 ", "tok1 "]
    import json

    for text, content in pairs:
        assert text is not None
        decoded = json.loads(text)
        assert (decoded["choices"][0]["delta"].get("content") if decoded["choices"] else None) == (
            content
        )


def test_a_backend_s_malformed_tool_calls_are_left_out_of_the_joined_answer(up: Any) -> None:
    """Tool-call fragments that are not ones (``"function": "oops"``, an index
    ``"x"`` or 10**9, an id that is a number) are dropped when a stream's
    calls are joined, never a crash nor a list grown to the index; the good
    call beside them comes through whole."""
    with (
        client(up) as c,
        c.chat.completions.create(model="openai/badcalls", messages=HELLO, stream=True) as s,
    ):
        chunks = list(s)
    joined = ails.types.completion_from_chunks(chunks)
    message = joined.choices[0].message
    assert message.content == "tok0 " and joined.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls == [
        {
            "id": "call_ok",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'},
        }
    ]
