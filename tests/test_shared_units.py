"""The pure parts of shared state, without Redis: OpenAI's reset format, the
cache key, token counting, the failure policy, and the settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ails.errors import ConfigError
from ails.server.auth import Authenticator, Caller
from ails.server.cache import cache_key
from ails.server.config import build_config
from ails.server.errors import GatewayError
from ails.server.policy import PolicyStore
from ails.server.ratelimit import (
    RateLimiter,
    TokenLedger,
    UsageMeter,
    answer_tokens,
    ask_for_usage,
    estimate_tokens,
    format_reset,
)
from ails.server.state import Count, Counter, MemoryStore, StateStore, StateUnavailable
from ails.types import Chunk

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.02, "20ms"),
        (0.9994, "999ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_reset_is_written_as_openai_writes_it(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_cache_key_covers_what_changes_the_answer() -> None:
    key = cache_key(dict(BODY), "m")
    assert key is not None and key.startswith("cache:")
    reordered = {"temperature": 0.0, "messages": BODY["messages"], "model": "alias", "user": "u"}
    assert cache_key(reordered, "m") == key  # key order, 0.0, user and the alias do not count
    assert cache_key({**BODY, "max_tokens": 5}, "m") != key
    assert cache_key(dict(BODY), "other") != key
    for uncacheable in ({"temperature": 0.2}, {"stream": True}, {"temperature": None}):
        assert cache_key({**BODY, **uncacheable}, "m") is None
    assert cache_key({"model": "m", "messages": []}, "m") is None  # no temperature given


def test_tokens_come_from_usage_or_an_estimate() -> None:
    messages = [{"role": "user", "content": "x" * 40}]
    with_usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    assert answer_tokens(json.dumps(with_usage).encode(), messages) == 7
    without = {"choices": [{"message": {"role": "assistant", "content": "y" * 8}}]}
    assert answer_tokens(json.dumps(without).encode(), messages) == 10 + 2
    assert estimate_tokens([{"content": [{"type": "text", "text": "abcd" * 3}]}]) == 3
    meter = UsageMeter(messages)
    content = msgspec.convert({"choices": [{"delta": {"content": "a"}}]}, Chunk)
    meter.observe([content, content])
    assert meter.tokens() == 10 + 2
    meter.observe([msgspec.convert({"choices": [], "usage": {"total_tokens": 42}}, Chunk)])
    assert meter.tokens() == 42
    body: dict[str, Any] = {"stream_options": {"other": 1}}
    ask_for_usage(body)
    assert body["stream_options"] == {"other": 1, "include_usage": True}


async def test_rate_limiter_counts_only_keys_with_limits() -> None:
    store = MemoryStore()
    limiter = RateLimiter.build(store, api_keys=["a", "b"], rpm=None, tpm=None)
    assert limiter is None  # nothing to count
    limiter = RateLimiter.build(store, api_keys=["a", "b"], rpm=2)
    assert limiter is not None
    auth = Authenticator(api_keys=["a", "b"], store=store)

    def caller(key: str) -> Caller:
        return Caller(key_digest=auth.matching_key(f"Bearer {key}"))

    assert await limiter.admit(caller("unknown")) is None
    first = await limiter.admit(caller("a"))
    assert first is not None and first.headers()["x-ratelimit-remaining-requests"] == "1"
    assert await limiter.admit(caller("a")) is not None
    with pytest.raises(GatewayError) as info:
        await limiter.admit(caller("a"))
    assert info.value.status == 429 and info.value.code == "rate_limit_exceeded"
    assert info.value.headers is not None and int(info.value.headers["retry-after"]) >= 1
    assert await limiter.admit(caller("b")) is not None  # each key its own count


async def test_tokens_used_are_written_in_one_batch() -> None:
    class Recording(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[dict[str, int]] = []

        async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
            self.writes.append(dict(amounts))
            return await super().add(amounts, window)

    store = Recording()
    ledger = TokenLedger(store, delay=0.02)
    for key, tokens in (("a", 5), ("b", 1), ("a", 7)):
        ledger.spend(key, tokens)
    assert store.writes == []  # nothing waits for the store
    await asyncio.sleep(0.05)
    assert store.writes == [{"a": 12, "b": 1}]
    ledger.spend("a", 1)
    await ledger.aclose()  # shutting down: written at once
    assert store.writes[-1] == {"a": 1}


class _Down(StateStore):
    """A store whose every call finds Redis unreachable."""

    async def seen_before(self, key: str, ttl: float) -> bool:
        raise StateUnavailable("down")

    async def consume_all(self, counters: Sequence[Counter]) -> tuple[bool, list[Count]]:
        raise StateUnavailable("down")

    async def add(self, amounts: Mapping[str, int], window: float) -> dict[str, int]:
        raise StateUnavailable("down")

    async def cache_get(self, key: str) -> bytes | None:
        raise StateUnavailable("down")

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        raise StateUnavailable("down")


async def test_closed_policy_refuses_checks_open_policy_skips_them() -> None:
    closed = PolicyStore(_Down(), fail_open=False)
    for call in (closed.seen_before("k", 1), closed.consume("k", 1, 60)):
        with pytest.raises(GatewayError) as info:
            await call
        assert info.value.status == 503 and info.value.code == "state_unavailable"
    opened = PolicyStore(_Down(), fail_open=True)
    assert await opened.seen_before("k", 1) is False
    assert (await opened.consume("k", 1, 60))[0] is True
    for store in (closed, opened):  # whatever the policy: no cache, tokens not counted
        assert await store.cache_get("k") is None
        await store.cache_set("k", b"v", 1)
        assert await store.add({"k": 5}, 60) == {}


def test_settings_from_the_file_environment_and_command_line(tmp_path: Path) -> None:
    (tmp_path / "bob.key").write_text("# bob\nbob-key\n")
    (tmp_path / "gw.toml").write_text(
        f"""
redis = "redis://:pw-secret@127.0.0.1:6379/2"
redis_failure = "open"
cache_ttl = 30
rpm = 60
[keys.alice]
key_env = "ALICE_KEY"
tpm = 1000
[keys.bob]
key_file = "{tmp_path / "bob.key"}"
rpm = 0
"""
    )
    cfg = build_config(
        file=str(tmp_path / "gw.toml"), cli={"redis_failure": "closed"}, environ={"ALICE_KEY": "ak"}
    )
    assert cfg.redis_failure == "closed" and cfg.cache_ttl == 30 and cfg.rpm == 60
    assert [(k.name, k.key, k.rpm, k.tpm) for k in cfg.keys] == [
        ("alice", "ak", None, 1000),
        ("bob", "bob-key", 0, None),
    ]
    assert cfg.api_keys == ["ak", "bob-key"]  # named keys are accepted keys
    assert "pw-secret" in cfg.secrets() and "pw-secret" not in repr(cfg)
    env = {"AILS_REDIS_URL": "redis://127.0.0.1:7000/0"}
    cfg = build_config(file=str(tmp_path / "gw.toml"), environ={**env, "ALICE_KEY": "ak"})
    assert cfg.redis == env["AILS_REDIS_URL"]


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"rpm": 5}, "limit API keys"),
        ({"redis": "http://127.0.0.1:6379"}, "redis://"),
        ({"redis_failure": "maybe"}, "'closed' or 'open'"),
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"api_key": ["k"], "tpm": -1}, "tpm must be at least 0"),
    ],
)
def test_settings_that_cannot_work_are_refused(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(cli={"upstream": ["http://127.0.0.1:9/v1"], **cli}, environ={})
