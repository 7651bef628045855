"""The protocol doc's vectors and every verification check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ails.errors import SignatureError
from ails.signing import format_timestamp, sign, signature_fields, verify

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("ms", "t"),
    [
        (1700000000000, "1700000000001"),
        (1700000000007, "1700000000007"),
        (1690000000128, "1690000000129"),
        (1699999999999, "1699999999999"),
    ],
)
def test_timestamp_vectors(ms: int, t: str) -> None:
    assert format_timestamp(ms) == t


@pytest.mark.parametrize(
    ("t", "m", "s"),
    [
        (
            "1700000000001",
            "Hello, who are you?",
            "fa8b2de9ab5409f7a11f0249d046ae427e50c55f12fb8458bbd8c84bb96718f9",
        ),
        ("1690000000123", "", "9804f11d09f97fdb11725d6c6c312f26cacf212195e193b74f9cb19f32cb672d"),
        (
            "1700000000001",
            "Привет, кто ты?",
            "fbef13c6ebb399496e428e6a6bb613f0a48da66b9d72e55963aa205f3d57158e",
        ),
    ],
)
def test_signature_vectors(t: str, m: str, s: str) -> None:
    assert sign(t, m) == s


def body(message: str = "Hello, who are you?", now: int = NOW) -> dict:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": message}],
        **signature_fields(message, now_ms=now, today="2023-11-14"),
    }


def test_a_fresh_body_verifies() -> None:
    verify(body(), now_ms=NOW + 1000, window_ms=300_000)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"t": "1700000000000"}, "signature_malformed"),  # even last digit
        ({"t": 1700000000001}, "signature_malformed"),  # not a string
        ({"t": "17000000000a1"}, "signature_malformed"),
        ({"s": "abc"}, "signature_malformed"),
        ({"d": "2023-13-45"}, "signature_malformed"),
        ({"d": "yesterday"}, "signature_malformed"),
        ({"d": "2023-11-20"}, "signature_stale"),
        ({"messages": []}, "signature_malformed"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "signature_malformed"),
        ({"s": "0" * 64}, "signature_invalid"),
    ],
)
def test_each_check_has_its_code(change: dict, code: str) -> None:
    b = body() | change
    with pytest.raises(SignatureError) as info:
        verify(b, now_ms=NOW, window_ms=300_000)
    assert info.value.code == code


def test_stale_and_future_timestamps() -> None:
    for skew in (-300_002, 300_002):
        with pytest.raises(SignatureError) as info:
            verify(body(now=NOW + skew), now_ms=NOW, window_ms=300_000)
        assert info.value.code == "signature_stale"


@given(st.text(max_size=200), st.integers(min_value=0, max_value=4_000_000_000_000))
def test_sign_verify_round_trip(message: str, now: int) -> None:
    b = {
        "messages": [{"role": "user", "content": message}],
        **signature_fields(message, now_ms=now, today=None),
    }
    b["d"] = (
        __import__("datetime")
        .datetime.fromtimestamp(int(b["t"]) / 1000, tz=__import__("datetime").timezone.utc)
        .strftime("%Y-%m-%d")
    )
    verify(b, now_ms=now, window_ms=300_000)


@given(st.text(min_size=1, max_size=50), st.data())
def test_any_one_character_change_fails(message: str, data: st.DataObject) -> None:
    b = body(message)
    field = data.draw(st.sampled_from(["m", "t", "s"]))
    if field == "m":
        i = data.draw(st.integers(0, len(message) - 1))
        new = data.draw(st.characters().filter(lambda c: c != message[i]))
        b["messages"] = [{"role": "user", "content": message[:i] + new + message[i + 1 :]}]
    else:
        value = b[field]
        i = data.draw(st.integers(0, len(value) - 1))
        alphabet = "0123456789" if field == "t" else "0123456789abcdef"
        new = data.draw(st.sampled_from([c for c in alphabet if c != value[i]]))
        b[field] = value[:i] + new + value[i + 1 :]
    with pytest.raises(SignatureError):
        verify(b, now_ms=NOW, window_ms=300_000)
