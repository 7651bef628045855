"""The plain-read fast path: ``SSEDecoder.feed_plain`` and the stream's
batches that keep their frames as read, which the gateway forwards as they are.

The decoder's result must not depend on which path took a read; a stream's
chunks, errors and end must not either. The streams come from a real server
on 127.0.0.1 that writes a scripted body in one write, so that a whole
answer arrives in one read (the fast path), or byte by byte (the slow one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from ails.errors import ProtocolError, UpstreamUnavailable
from ails.providers.base import Batch, chunk_meta, raw_texts
from ails.providers.openai import OpenAIProvider
from ails.sse import Event, SSEDecoder
from ails.wire import frame_batch
from test_sse import arbitrary_streams, reference, split_at

HELLO = [{"role": "user", "content": "hi"}]


def mixed(*reads: bytes) -> list[Event]:
    """Decode as SSEChunkStream does: feed_plain first, feed when it declines."""
    decoder = SSEDecoder()
    events: list[Event] = []
    for read in reads:
        plain = decoder.feed_plain(read)
        if plain is None:
            events += decoder.feed(read)
            continue
        frames, data, n = plain
        texts = frames[6:-2].split(b"\n\ndata: ") if n else []
        assert len(texts) == n and data == b",".join(texts)
        assert frames == b"".join(b"data: " + t + b"\n\n" for t in texts)
        for text in texts:
            events.append(Event(text.decode("utf-8", "replace"), id=decoder.last_event_id))
    return events


@given(arbitrary_streams, st.data())
def test_feed_plain_then_feed_reads_any_stream_like_the_reference(
    stream: bytes, data: st.DataObject
) -> None:
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert mixed(*split_at(stream, points)) == reference(stream)
    assert mixed(stream) == reference(stream)


json_texts = st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3).map(
    lambda d: json.dumps(d, ensure_ascii=False).encode()
)


@given(st.lists(json_texts, min_size=1, max_size=8), st.data())
def test_plain_events_split_anywhere(texts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(b"data: " + t + b"\n\n" for t in texts)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert mixed(*split_at(stream, points)) == reference(stream)


def test_a_whole_plain_read_is_taken_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed_plain(b'data: {"a":1}\n\ndata: [2]\n\ndata: {"b"') == (
        b'data: {"a":1}\n\ndata: [2]\n\n',
        b'{"a":1},[2]',
        2,
    )
    assert decoder.feed_plain(b":3}\n\n") == (b'data: {"b":3}\n\n', b'{"b":3}', 1)


@pytest.mark.parametrize(
    "read",
    [
        b"data: a\ndata: b\n\n",  # an event of two lines
        b"data: a\n\n: comment\n\n",
        b"event: e\ndata: a\n\n",
        b"data: a\r\n\r\n",
        b"data: a\n\n\n",  # a blank line too many
        b"\xef\xbb\xbfdata: a\n\n",  # a byte-order mark
        b"data:a\n\n",
    ],
)
def test_anything_but_plain_events_is_left_to_feed(read: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed_plain(read) is None
    assert decoder.feed(read) == reference(read)


# --- a stream over a real server ---------------------------------------------


def chunk(i: int, content: str | None = "x", **extra: Any) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return json.dumps({**body, "choices": choices, **extra, "n": i}, ensure_ascii=False).encode()


def sse(*texts: bytes) -> bytes:
    return b"".join(b"data: " + t + b"\n\n" for t in texts)


class Scripted:
    """A server on 127.0.0.1 that answers every chat request with ``body``,
    in one write, or one byte per write when ``bytewise``."""

    def __init__(self) -> None:
        self.body = b""
        self.bytewise = False

    async def chat(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.bytewise:
            for i in range(len(self.body)):
                await resp.write(self.body[i : i + 1])
                await asyncio.sleep(0)
        else:
            await resp.write(self.body)
        await resp.write_eof()
        return resp


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, OpenAIProvider]]:
    server = Scripted()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
    try:
        yield server, provider
    finally:
        await provider.aclose()
        await runner.cleanup()


async def batches(provider: OpenAIProvider) -> tuple[list[list[Any]], Exception | None]:
    out: list[list[Any]] = []
    stream = await provider.connect("m", HELLO, stream=True)
    try:
        async for batch in stream:
            out.append(batch)
    except (ProtocolError, UpstreamUnavailable) as exc:
        return out, exc
    finally:
        await stream.aclose()
    return out, None


def ns(got: list[list[Any]]) -> list[Any]:
    return [json.loads(text)["n"] for batch in got for text in raw_texts(batch)]


async def test_a_plain_read_keeps_its_frames_and_decodes_every_chunk(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    texts = [chunk(0, "a"), chunk(1, "ü €"), chunk(2, None, usage={"prompt_tokens": 1})]
    server.body = sse(*texts, b"[DONE]")
    got, error = await batches(provider)
    assert error is None
    [batch] = got
    assert isinstance(batch, Batch) and batch.frames == sse(*texts)
    assert [t.encode() for t in raw_texts(batch)] == texts  # type: ignore[union-attr]
    assert [c.choices[0].delta.content for c in batch[:2]] == ["a", "ü €"]
    assert batch[2].usage is not None and batch[2].usage.prompt_tokens == 1
    assert frame_batch(batch, include_usage=True) == batch.frames
    # The usage-only chunk the client did not ask for is left out.
    assert frame_batch(batch, include_usage=False) == sse(*texts[:2])


async def test_a_chunk_that_holds_data_colon_is_escaped_for_the_naive_client(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    server.body = sse(chunk(0, "a data: b"), b"[DONE]")
    [batch], _ = await batches(provider)
    assert b"data\\u003a b" in frame_batch(batch, include_usage=True)


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"{not json", "chunk 2 is not valid chunk JSON"),
        (b'{"choices":[]},{"choices":[]}', "chunk 2 is not valid chunk JSON"),
        (b"", "chunk 2 is not valid chunk JSON"),
    ],
)
async def test_a_bad_chunk_comes_after_the_good_ones_either_way(
    scripted: tuple[Scripted, OpenAIProvider], bytewise: bool, bad: bytes, message: str
) -> None:
    server, provider = scripted
    server.bytewise = bytewise
    server.body = sse(chunk(0), chunk(1), bad, chunk(3), b"[DONE]")
    got, error = await batches(provider)
    assert ns(got) == [0, 1]
    assert isinstance(error, ProtocolError) and error.code == "invalid_chunk"
    assert message in str(error)


async def chunks_of(provider: OpenAIProvider) -> tuple[list[Any], Exception | None]:
    """What a library user iterating the chunks sees."""
    out: list[Any] = []
    stream = await provider.connect("m", HELLO, stream=True)
    try:
        async for batch in stream:
            for got in batch:
                out.append(got)
    except ProtocolError as exc:
        return out, exc
    finally:
        await stream.aclose()
    return out, None


@pytest.mark.parametrize("bytewise", [False, True])
async def test_a_chunk_with_a_field_of_the_wrong_type_raises_where_it_is_used(
    scripted: tuple[Scripted, OpenAIProvider], bytewise: bool
) -> None:
    server, provider = scripted
    server.bytewise = bytewise
    server.body = sse(chunk(0), chunk(1), chunk(2).replace(b'"x"', b"5"), chunk(3), b"[DONE]")
    got, error = await chunks_of(provider)
    assert [c.choices[0].delta.content for c in got] == ["x", "x"]
    assert isinstance(error, ProtocolError) and error.code == "invalid_chunk"
    assert "chunk 2 is not valid chunk JSON" in str(error) and error.provider == provider.name
    # The batch holds it, as received: a gateway forwards it as sent.
    got_batches, error = await batches(provider)
    assert error is None and ns(got_batches) == [0, 1, 2, 3]
    forwarded = b"".join(frame_batch(b, include_usage=True) for b in got_batches)
    assert forwarded == server.body.removesuffix(b"data: [DONE]\n\n")
    if not bytewise:  # one read, one batch: by index too
        [batch] = got_batches
        assert batch[1].choices[0].delta.content == "x"
        with pytest.raises(ProtocolError, match="chunk 2 is not valid chunk JSON"):
            batch[2]  # the access is the test


async def test_a_batch_decodes_its_chunks_on_first_use_as_a_list(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    server.body = sse(chunk(0), chunk(1, "y"), chunk(2, "z"), b"[DONE]")
    [batch], error = await batches(provider)
    assert error is None and len(batch) == 3 and batch
    assert [m.choices[0].finish_reason for m in chunk_meta(batch)] == [None] * 3
    head: list[Any] = []  # list.__add__ would read the list's storage, empty until decoded
    assert head + batch == list(batch) == batch and batch[1:] == batch[-2:]
    assert [c.choices[0].delta.content for c in batch] == ["x", "y", "z"]
    batch.append(batch[0])
    assert len(batch) == 4 and batch.count(batch[0]) == 2


async def test_an_in_band_error_ends_a_plain_read(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    err = json.dumps({"error": {"message": "boom here", "code": "boom"}}).encode()
    server.body = sse(chunk(0), err, chunk(2), b"[DONE]")
    got, error = await batches(provider)
    assert ns(got) == [0]
    assert isinstance(error, UpstreamUnavailable) and error.code == "boom"


async def test_done_ends_the_stream_wherever_it_is_in_the_read(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    server.body = sse(chunk(0), b"[DONE]", chunk(2))
    got, error = await batches(provider)
    assert error is None and ns(got) == [0]


async def test_invalid_utf8_reads_as_replacement_characters(
    scripted: tuple[Scripted, OpenAIProvider],
) -> None:
    server, provider = scripted
    server.body = sse(chunk(0, "a").replace(b'"a"', b'"a\xff"'), b"[DONE]")
    [batch], error = await batches(provider)
    assert error is None
    assert batch[0].choices[0].delta.content == "a\ufffd"
    assert b"\xff" not in frame_batch(batch, include_usage=True)
