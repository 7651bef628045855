"""Request intake with plain values: the remembered valid keys, the body read
from the buffer or streamed, within its limit; validation's short ways; the
non-streamed answer."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from ails.server import answer
from ails.server.answer import JSONAnswer, _attributes
from ails.server.auth import Authenticator
from ails.server.body import read_body
from ails.server.errors import GatewayError, Redactor
from ails.server.state import MemoryStore
from ails.server.validation import validate

# -- keys --------------------------------------------------------------------------------


def test_a_valid_authorization_header_is_remembered_and_a_wrong_one_never() -> None:
    auth = Authenticator(api_keys=["k1", "k2"], store=MemoryStore(), key_names={"k2": "two"})

    def head(value: str) -> Any:
        request = make_mocked_request("POST", "/", headers={"Authorization": value})
        return auth.identify_head(request)

    first = head("Bearer k2")
    assert first is not None and first.key_id == "two"
    assert (
        head("Bearer k2") is first
        and auth.identify(make_mocked_request("GET", "/", headers={"Authorization": "Bearer k2"}))
        is first
    )
    assert head("bearer  k1 ") is not None  # another spelling: checked, then kept too
    assert set(auth._known) == {"Bearer k2", "bearer  k1 "}
    for wrong in ("Bearer k3", "Bearer k2x", "Basic k1"):
        with pytest.raises(GatewayError) as refused:
            head(wrong)
        assert refused.value.status == 401
    assert set(auth._known) == {"Bearer k2", "bearer  k1 "}  # a wrong key is never kept


def test_the_remembered_headers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ails.server.auth.KNOWN_HEADERS", 3)
    auth = Authenticator(api_keys=["k1"], store=MemoryStore())
    for spaces in range(1, 8):
        request = make_mocked_request(
            "POST", "/", headers={"Authorization": "Bearer" + " " * spaces + "k1"}
        )
        assert auth.identify_head(request) is not None
        assert len(auth._known) <= 3


# -- the body ----------------------------------------------------------------------------


def _request(parts: list[bytes], *, eof: bool, length: int | None = None) -> Any:
    payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
    for part in parts:
        payload.feed_data(part)
    if eof:
        payload.feed_eof()
    headers = {"Content-Length": str(length)} if length is not None else {}
    return make_mocked_request("POST", "/", headers=headers, payload=payload)


async def test_a_body_that_has_arrived_is_taken_whole() -> None:
    request = _request([b'{"a":', b"1}"], eof=True)
    assert await read_body(request, 7) == b'{"a":1}'
    assert await read_body(_request([], eof=True), 7) == b""


@pytest.mark.parametrize("anonymous", [False, True])
async def test_a_body_over_the_limit_is_413_whether_it_has_arrived_or_not(anonymous: bool) -> None:
    for request in (
        _request([b"x" * 8], eof=True),  # all in the buffer
        _request([b"x" * 4], eof=False, length=8),  # refused from its Content-Length
    ):
        with pytest.raises(GatewayError) as refused:
            await read_body(request, 7, anonymous=anonymous)
        assert refused.value.status == 413 and refused.value.code == "body_too_large"
        assert ("without an API key" in refused.value.message) is anonymous


@pytest.mark.parametrize("anonymous", [False, True])
async def test_a_body_still_arriving_is_read_to_its_end(anonymous: bool) -> None:
    request = _request([b'{"a":'], eof=False)
    loop = asyncio.get_running_loop()
    loop.call_soon(request.content.feed_data, b"1}")
    loop.call_soon(request.content.feed_eof)
    assert await read_body(request, 7, anonymous=anonymous) == b'{"a":1}'


# -- the answer --------------------------------------------------------------------------


def test_a_json_answer_is_made_by_hand_as_aiohttp_makes_it() -> None:
    # False: this aiohttp makes a Response otherwise than server/answer.py
    # knows (answers are still right, made the slow way): update JSONAnswer.
    assert answer.FAST
    headers = {"x-request-id": "r1", "x-ails-overhead-ms": "0.100", "x-ails-cache": "miss"}
    ours = JSONAnswer(b'{"id":"c"}', headers)
    theirs = web.Response(body=b'{"id":"c"}', content_type="application/json", headers=headers)
    assert _attributes(ours) == _attributes(theirs)
    assert ours.status == 200 and ours.content_type == "application/json"
    assert ours.body == b'{"id":"c"}' and ours.headers["X-Request-Id"] == "r1"


def test_a_json_answer_is_made_by_aiohttp_when_it_is_not_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answer, "FAST", False)
    made = JSONAnswer(b"{}", {"x-request-id": "r"})
    assert made.status == 200 and made.content_type == "application/json"
    assert made.body == b"{}" and made.headers["x-request-id"] == "r"


# -- validation --------------------------------------------------------------------------

_OK = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("message", "param", "code"),
    [("x", "messages[1]", "invalid_type"),
     ({"content": "hi"}, "messages[1].role", "missing_required_parameter"),
     ({"role": ""}, "messages[1].role", "invalid_value"),
     ({"role": 5}, "messages[1].role", "invalid_type"),
     ({"role": "user", "content": 5}, "messages[1].content", "invalid_type")],
)  # fmt: skip
def test_a_bad_message_is_named_by_its_index(message: Any, param: str, code: str) -> None:
    body = {"model": "m", "messages": [_OK, message, "never looked at"]}
    with pytest.raises(GatewayError) as refused:
        validate(body, max_messages=10)
    assert (refused.value.param, refused.value.code) == (param, code)


def test_the_optional_fields_are_checked_whenever_present() -> None:
    assert validate({"model": "m", "messages": [_OK]}, max_messages=1) == ("m", False, False)
    body = {"model": "m", "messages": [_OK], "stream": True}
    assert validate(body, max_messages=1) == ("m", True, False)
    body = {"stream_options": {"include_usage": True}, "model": "m", "messages": [_OK]}
    assert validate(body, max_messages=1) == ("m", False, True)
    for bad in ({"stream": "yes"}, {"temperature": 3}, {"max_tokens": 0}, {"stop": 5}):
        with pytest.raises(GatewayError):
            validate({"model": "m", "messages": [_OK], **bad}, max_messages=1)


# -- the redactor's gates ----------------------------------------------------------------


def test_the_redactor_searches_a_line_only_for_needles_that_hold_no_other() -> None:
    redact = Redactor(["sk-secret-1", "cret"], names={"http://up:1": "<u1>", "up:1": "<u1>"})
    assert sorted(redact._gates) == ["cret", "up:1"]
    line = "POST /v1/chat/completions 200 rid=abc who=key:k1"
    assert redact(line) is line  # nothing there: the same string back
    assert redact("sk-secret-1 at http://up:1/v1, up:1") == "*** at <u1>/v1, <u1>"
    assert redact("cret") == "***"
