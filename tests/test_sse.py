"""The SSE decoder against the WHATWG event-stream rules, and the encoder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ails.errors import ProtocolError
from ails.sse import (
    Event,
    SSEDecoder,
    aiter_events,
    iter_events,
)
from ails.wire import DONE, error_event
from sse_encode import encode_comment, encode_event


def decode(*chunks: bytes, max_line_bytes: int = 1_048_576) -> list[Event]:
    return list(iter_events(chunks, max_line_bytes=max_line_bytes))


def bytewise(stream: bytes) -> list[Event]:
    return decode(*(stream[i : i + 1] for i in range(len(stream))))


def split_at(stream: bytes, points: list[int]) -> list[bytes]:
    cuts = [0, *sorted(points), len(stream)]
    return [stream[a:b] for a, b in pairwise(cuts)]


# --- the Event value ---------------------------------------------------------


def test_event_defaults_equality_and_repr() -> None:
    ev = Event("x")
    assert (ev.event, ev.data, ev.id, ev.retry) == ("message", "x", None, None)
    assert ev == Event(data="x", event="message")
    assert ev != Event("x", id="1")
    assert ev != "x"
    assert repr(ev) == "Event(data='x', event='message', id=None, retry=None)"


# --- byte-order mark -----------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [Event("a")]


def test_bom_split_across_reads_is_stripped() -> None:
    assert decode(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [Event("a")]
    assert bytewise(b"\xef\xbb\xbfdata: a\n\n") == [Event("a")]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM makes the field name "\ufeffdata", an unknown field.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_bom_only_at_start_of_stream() -> None:
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [Event("a")]


def test_bom_inside_a_value_is_kept() -> None:
    assert decode(b"data: \xef\xbb\xbfa\n\n") == [Event("\ufeffa")]


# --- line endings --------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert decode(stream) == [Event("a\nb", event="e")]
    assert bytewise(stream) == [Event("a\nb", event="e")]


def test_mixed_line_endings() -> None:
    assert decode(b"data: a\rdata: b\r\ndata: c\n\r\n") == [Event("a\nb\nc")]


def test_crlf_split_across_reads_is_one_line_end() -> None:
    # Were the split CRLF two line ends, the LF would be a blank line and
    # dispatch "a" on its own.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [Event("a\nb")]


def test_cr_cr_is_two_line_ends() -> None:
    assert decode(b"data: a\r", b"\r") == [Event("a")]


def test_line_ended_by_trailing_cr_is_complete_at_once() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\n\r") == [Event("a")]
    assert dec.feed(b"\n") == []  # the LF pairs with the CR: no extra blank line
    assert dec.feed(b"data: b\n\n") == [Event("b")]


def test_empty_reads_keep_the_pending_cr() -> None:
    assert decode(b"data: a\r", b"", b"\n", b"\n") == [Event("a")]


# --- fields --------------------------------------------------------------------


def test_comment_is_ignored() -> None:
    assert decode(b": keep-alive\n\n:\ndata: a\n: mid-block\n\n") == [Event("a")]


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),
        (b"data: x ", "x "),
        (b"data:a:b", "a:b"),
        (b"data: : x", ": x"),
        (b"data", ""),
        (b"data:", ""),
        (b"data: ", ""),
    ],
)
def test_colon_and_single_space_handling(line: bytes, value: str) -> None:
    assert decode(line + b"\n\n") == [Event(value)]


def test_field_name_is_case_sensitive_and_exact() -> None:
    assert decode(b"Data: a\n\ndata : b\n\n") == []


def test_data_lines_are_joined_by_lf() -> None:
    assert decode(b"data: a\ndata:\ndata: c\n\n") == [Event("a\n\nc")]


def test_empty_data_is_an_event() -> None:
    assert decode(b"data\n\n") == [Event("")]
    assert decode(b"data:\n\n") == [Event("")]


def test_block_without_data_is_not_dispatched() -> None:
    assert decode(b"event: x\nid: 1\nretry: 5\n\n") == []


def test_event_ping_alone_dispatches_nothing() -> None:
    assert decode(b"event: ping\n\n") == []


def test_event_type_is_reset_after_each_block() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n"
    assert [e.event for e in decode(stream)] == ["a", "message", "message"]


def test_empty_event_type_means_message() -> None:
    assert decode(b"event:\ndata: x\n\n") == [Event("x", event="message")]


def test_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\n"
    assert [e.id for e in decode(stream)] == ["1", "1", "2", ""]


def test_id_alone_makes_no_phantom_event() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"id: 7\n\n") == []
    assert dec.last_event_id == "7"
    assert dec.feed(b"data: x\n\n") == [Event("x", id="7")]


def test_id_applies_wherever_it_is_in_the_block() -> None:
    assert decode(b"data: x\nid: 9\n\n") == [Event("x", id="9")]


def test_id_with_nul_is_ignored() -> None:
    dec = SSEDecoder()
    events = dec.feed(b"id: 1\n\nid: a\x00b\ndata: x\n\n")
    assert events == [Event("x", id="1")]
    assert dec.last_event_id == "1"


def test_retry_with_digits_is_kept() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"retry: 3000\ndata: a\n\ndata: b\n\n") == [
        Event("a", retry=3000),
        Event("b"),
    ]
    assert dec.retry == 3000


@pytest.mark.parametrize(
    "value", [b"+5", b"-5", b"5s", b" 5", b"5 ", b"", b"1.5", b"\xd9\xa3", b"0x10"]
)
def test_retry_without_only_ascii_digits_is_ignored(value: bytes) -> None:
    dec = SSEDecoder()
    assert dec.feed(b"retry: 10\n\nretry: " + value + b"\ndata: a\n\n") == [Event("a")]
    assert dec.retry == 10


def test_retry_with_too_many_digits_is_ignored_without_error() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"retry: " + b"9" * 10_000 + b"\ndata: a\n\n") == [Event("a")]
    assert dec.retry is None


def test_unknown_field_is_ignored() -> None:
    assert decode(b"foo: bar\ndata: a\nbaz\n\n") == [Event("a")]


def test_all_events_of_one_read_come_back_together() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == [Event("1"), Event("2")]
    assert dec.feed(b"\n\n") == [Event("3")]


# --- end of stream -------------------------------------------------------------


def test_unterminated_last_event_is_dropped() -> None:
    assert decode(b"data: a\n\ndata: b\n") == [Event("a")]
    assert decode(b"data: a\n\ndata: b") == [Event("a")]


def test_end_returns_nothing_and_readies_a_new_stream() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"id: 4\nretry: 9\ndata: half") == []
    assert dec.end() == []
    # The half line and block are gone; the ID and retry survive for reconnecting.
    assert dec.feed(b"\xef\xbb\xbfdata: new\n\n") == [Event("new", id="4")]
    assert dec.retry == 9


# --- text decoding -------------------------------------------------------------


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert decode(b"data: a\xffb\xc3\n\n") == [Event("a\ufffdb\ufffd")]


def test_multibyte_character_split_across_reads() -> None:
    assert decode(b"data: \xe2", b"\x82", b"\xacuro\n\n") == [Event("€uro")]
    assert bytewise("data: 😀 é\n\n".encode()) == [Event("😀 é")]


# --- the line limit ------------------------------------------------------------


def test_overlong_line_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(b"data: " + b"x" * 100 + b"\n\n", max_line_bytes=64)
    assert info.value.code == "sse_line_too_long"


def test_overlong_line_is_caught_before_it_is_buffered() -> None:
    dec = SSEDecoder(max_line_bytes=1000)
    fed = 0
    with pytest.raises(ProtocolError) as info:
        while fed < 1_000_000:
            dec.feed(b"x" * 100)
            fed += 100
    assert info.value.code == "sse_line_too_long"
    assert fed <= 1000  # raised on the read that crossed the limit


def test_line_at_the_limit_and_many_short_lines_are_fine() -> None:
    limit = 64
    line = b"data:" + b"x" * (limit - 5)
    assert decode(line + b"\r\n\r\n", max_line_bytes=limit) == [Event("x" * (limit - 5))]
    many = b"data: ab\n\n" * 1000
    assert len(decode(many, max_line_bytes=limit)) == 1000


# --- sync and async drivers ----------------------------------------------------


def test_iter_events_over_reads() -> None:
    assert list(iter_events([b"data: a\n", b"\ndata: b\n\n"])) == [Event("a"), Event("b")]


async def test_aiter_events_over_reads() -> None:
    async def reads() -> AsyncIterator[bytes]:
        for chunk in (b"\xef\xbb", b"\xbfevent: e\ndata: a\r", b"\n\r\n", b"data: dropped"):
            yield chunk

    assert [e async for e in aiter_events(reads())] == [Event("a", event="e")]


async def test_aiter_events_raises_on_overlong_line() -> None:
    async def reads() -> AsyncIterator[bytes]:
        yield b"data: " + b"x" * 100

    with pytest.raises(ProtocolError):
        [e async for e in aiter_events(reads(), max_line_bytes=10)]


# --- encoder -------------------------------------------------------------------


def test_encode_event_layout() -> None:
    assert encode_event("a\r\nb\rc\nd", event="e", id="1", retry=50) == (
        b"event: e\nid: 1\nretry: 50\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert encode_event("") == b"data: \n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_encode_event_rejects_line_breaks_and_nul_in_event_and_id(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_event("x", event=bad)
    with pytest.raises(ValueError):
        encode_event("x", id=bad)


def test_encode_event_rejects_negative_retry() -> None:
    with pytest.raises(ValueError):
        encode_event("x", retry=-1)


def test_encode_event_rejects_text_that_is_not_unicode() -> None:
    with pytest.raises(ValueError):  # a lone surrogate has no UTF-8 form
        encode_event("\ud800")


def test_comments_and_wire_frames_decode() -> None:
    assert encode_comment("ping") == b": ping\n\n"
    assert encode_comment() == b": \n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    stream = encode_comment("x\ndata: injected") + error_event("a data: b", type="t") + DONE
    error = '{"error":{"message":"a data\\u003a b","type":"t","code":null,"param":null}}'
    assert decode(stream) == [Event(error), Event("[DONE]")]


# --- properties ----------------------------------------------------------------

# Encodable text only: a lone surrogate cannot be written as UTF-8.
any_text = st.text(st.characters(codec="utf-8"))
field_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r\n"))
event_args = st.tuples(
    any_text,  # data, including CR and LF
    st.none() | field_text,  # event
    st.none() | field_text,  # id
    st.none() | st.integers(0, 10**12),  # retry
)


@given(st.lists(event_args, max_size=8), st.data())
def test_any_split_of_encoded_events_matches_one_read(
    events: list[tuple[str, str | None, str | None, int | None]], data: st.DataObject
) -> None:
    stream = b"".join(encode_event(d, event=e, id=i, retry=r) for d, e, i, r in events)
    whole = decode(stream)
    assert len(whole) == len(events)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert decode(*split_at(stream, points)) == whole


def reference(stream: bytes) -> list[Event]:
    """A slow, literal reading of the WHATWG steps, to check the fast decoder by."""
    text = stream.decode("utf-8", "replace")
    text = text[1:] if text.startswith("\ufeff") else text
    events, data, kind, last_id, retry = [], "", "", None, None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for line in lines[:-1]:  # the last piece has no line end: discarded
        if line == "":
            if data:
                events.append(Event(data[:-1], kind or "message", last_id, retry))
            data, kind, retry = "", "", None
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


# Random bytes seldom spell a field; blocks of lines made of SSE syntax reach every rule.
eol = st.sampled_from([b"\r", b"\n", b"\r\n"])
field = st.sampled_from(
    [b"data: a", b"data:  b", b"data", b"event: e", b"event:", b"id: 1", b"id: \x00", b"id"]
) | st.sampled_from([b":c", b"retry: 7", b"retry: +7", b"\xef\xbb\xbf", b"x\xe2\x82\xac\xff"])
block = st.lists(st.tuples(field, field | st.just(b""), eol).map(b"".join), max_size=4)
sse_blocks = st.lists(st.tuples(block.map(b"".join), eol).map(b"".join), max_size=8)
arbitrary_streams = st.binary(max_size=300) | sse_blocks.map(b"".join)


@given(arbitrary_streams, st.data())
def test_arbitrary_bytes_never_raise_and_do_not_depend_on_splits(
    stream: bytes, data: st.DataObject
) -> None:
    whole = decode(stream)
    assert whole == reference(stream)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert decode(*split_at(stream, points)) == whole
    assert bytewise(stream) == whole


@given(st.binary().filter(lambda b: b"\r" not in b and b"\n" not in b), st.data())
def test_invalid_utf8_is_replaced_in_place(payload: bytes, data: st.DataObject) -> None:
    try:
        payload.decode("utf-8")
        assume(False)
    except UnicodeDecodeError:
        pass
    stream = b"data: " + payload + b"\n\n"
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    [event] = decode(*split_at(stream, points))
    assert "\ufffd" in event.data
    assert event.data == payload.decode("utf-8", "replace")


@given(st.lists(event_args, min_size=1, max_size=8))
def test_encode_then_decode_round_trips(
    events: list[tuple[str, str | None, str | None, int | None]],
) -> None:
    stream = b"".join(encode_event(d, event=e, id=i, retry=r) for d, e, i, r in events)
    decoded = decode(stream)
    last_id: str | None = None
    expected = []
    for d, e, i, r in events:
        last_id = i if i is not None else last_id
        # Data lines are split on CRLF, CR and LF alike, and come back joined by LF.
        normal = d.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(Event(normal, event=e or "message", id=last_id, retry=r))
    assert decoded == expected
