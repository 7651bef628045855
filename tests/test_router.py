"""Pure parts of routing: retry policy, retry-after parsing, model names, errors."""

from __future__ import annotations

import email.utils
import inspect
from typing import Any

import pytest

from ails.errors import (
    AuthFailed,
    BadRequest,
    NotFound,
    RateLimited,
    Timeout,
    UpstreamUnavailable,
    error_for_status,
)
from ails.providers._http import error_from_body, parse_retry_after
from ails.providers.openai import _NAMED, OpenAIProvider
from ails.providers.registry import split_model
from ails.router import _PARAM_FIELDS, RETRY_AFTER_CAP, is_retryable, request_params, retry_delay
from ails.types import ChatRequest


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    assert retry_delay(0, None, rand=lambda: 0.0) == 0.5
    assert retry_delay(1, None, rand=lambda: 0.0) == 1.0
    assert retry_delay(10, None, rand=lambda: 0.0) == 8.0
    assert retry_delay(0, None, rand=lambda: 1.0) == 0.375


def test_retry_after_wins_up_to_the_cap() -> None:
    assert retry_delay(0, 3.0) == 3.0
    assert retry_delay(0, RETRY_AFTER_CAP + 1, rand=lambda: 0.0) == 0.5


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(10.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequest, False),
        (401, AuthFailed, False),
        (403, AuthFailed, False),
        (404, NotFound, False),
        (408, UpstreamUnavailable, True),
        (409, UpstreamUnavailable, True),
        (413, BadRequest, False),
        (422, BadRequest, False),
        (429, RateLimited, True),
        (500, UpstreamUnavailable, True),
        (503, UpstreamUnavailable, True),
    ],
)
def test_status_mapping(status: int, cls: type, retryable: bool) -> None:
    err = error_for_status(status, "m", provider="p")
    assert type(err) is cls and err.retryable is retryable and err.status == status
    assert is_retryable(err) is retryable


def test_timeouts_are_retryable() -> None:
    assert is_retryable(Timeout("t", kind="connect"))


def test_error_body_keeps_the_upstream_message() -> None:
    err = error_from_body(
        429,
        b'{"error":{"message":"slow down","code":"rate_limit"}}',
        provider="p",
        retry_after=2.0,
    )
    assert isinstance(err, RateLimited) and err.message == "slow down"
    assert err.code == "rate_limit" and err.retry_after == 2.0
    text = error_from_body(502, b"<html>bad gateway</html>", provider="p")
    assert "bad gateway" in text.message and text.body == "<html>bad gateway</html>"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai/gpt-4o", ("openai", "gpt-4o")),
        ("openai/meta-llama/Llama-3", ("openai", "meta-llama/Llama-3")),
        ("gpt-4o", ("local", "gpt-4o")),
        ("meta-llama/Llama-3", ("local", "meta-llama/Llama-3")),
        (None, ("local", "default")),
        ("fast", ("signed", "gpt-3.5-turbo")),
    ],
)
def test_model_names(name: str | None, expected: tuple[str, str], monkeypatch) -> None:
    monkeypatch.delenv("AILS_MODEL", raising=False)
    assert split_model(name, aliases={"fast": "signed/gpt-3.5-turbo"}) == expected


def test_ails_model_changes_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILS_MODEL", "openai/gpt-4o-mini")
    assert split_model("x") == ("openai", "x")
    assert split_model(None) == ("openai", "gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # a key does not change the default
    monkeypatch.delenv("AILS_MODEL")
    assert split_model(None) == ("local", "default")


def test_request_params_has_every_field_of_a_request() -> None:
    # request_params names each field (no loop over them, for speed): a field
    # added to ChatRequest must be added there too, or this fails.
    values = {f: object() for f in _PARAM_FIELDS}
    request = ChatRequest(model="m", messages=[], extra={"x_extra": 1}, **values)
    provider = OpenAIProvider(base_url="http://127.0.0.1:9/v1")
    assert request_params(provider, request) == {**values, "x_extra": 1}
    assert request_params(provider, ChatRequest(model="m", messages=[])) == {"stream": False}


async def test_connect_sends_every_named_field_in_order() -> None:
    # OpenAIProvider.connect names each field it takes (no loop over
    # locals()): every one it declares goes into the body, in this order,
    # then the unknown ones, then stream: true.
    names = [
        p
        for p in inspect.signature(OpenAIProvider.connect).parameters
        if p not in ("self", "stream", "extra")
    ]
    assert tuple(names) == _NAMED
    provider = OpenAIProvider(base_url="http://127.0.0.1:9/v1")
    sent: list[dict[str, Any]] = []

    async def open_sse(path: str, body: dict[str, Any]) -> Any:
        sent.append(body)

    provider.open_sse = open_sse  # type: ignore[method-assign,assignment]
    values = {name: f"v-{name}" for name in names}
    await provider.connect(**values, stream=False, other="o")  # type: ignore[arg-type]
    await provider.connect("m", [], top_p=None, seed=3)
    assert list(sent[0].items()) == [*values.items(), ("other", "o"), ("stream", True)]
    assert sent[1] == {"model": "m", "messages": [], "seed": 3, "stream": True}
