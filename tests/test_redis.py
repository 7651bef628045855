"""Several ``ails serve`` replicas as one: shared state in a real ``redis-server``.

Two gateways (A and B, failure policy ``closed``, configured from a TOML file)
and a third (``open``, the same file with ``--redis-failure open`` on the
command line) share one Redis in front of the test upstream. A signed body
accepted by A is a replay on B; a quota and a rate limit are spent across
both; racing requests for the last unit admit exactly one; B serves A's cached
answer; Redis stopped or hung gives the policy's answers, and the gateways
recover by themselves when it is back; every key expires.

Counters live in fixed windows aligned to the epoch (a minute for rate
limits): a test that counts requests first waits for a fresh minute when the
current one is about to end (:func:`fresh_minute`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis
from multidict import CIMultiDict

from ails.server.ratelimit import FLUSH_S
from ails.server.redis_store import RedisStore
from ails.server.state import Counter, MemoryStore, StateStore
from ails.signing import format_timestamp, sign
from gateway_proc import Gateway
from redis_proc import RedisServer, require_redis_server
from upstream import Upstream

UNLIMITED = "client-unlimited-1"
RPM_KEY = "client-rpm-3"
TPM_KEY = "client-tpm-20"
PREFIX = "test:"
HELLO: Any = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream() as u:
        yield u


@pytest.fixture(scope="module")
def config_file(
    up: Upstream, redis_srv: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("gw") / "gateway.toml"
    path.write_text(
        f"""
[serve]
redis = "{redis_srv.url}"
redis_prefix = "{PREFIX}"
cache_ttl = 60
allow_signed = true
signed_quota = "3/day"
trusted_proxies = ["127.0.0.1"]
api_keys = ["{UNLIMITED}"]
max_retries = 0

[serve.aliases]
"gpt-x" = "test-model"

[serve.keys.three-a-minute]
key = "{RPM_KEY}"
rpm = 3

[serve.keys.twenty-tokens]
key = "{TPM_KEY}"
tpm = 20

[[serve.upstreams]]
url = "{up.base_url}"
"""
    )
    return path


@pytest.fixture(scope="module")
def replicas(config_file: Path) -> Iterator[tuple[Gateway, Gateway]]:
    with Gateway(["--config", str(config_file)]) as a, Gateway(["--config", str(config_file)]) as b:
        yield a, b


@pytest.fixture(scope="module")
def gw_open(config_file: Path) -> Iterator[Gateway]:
    with Gateway(["--config", str(config_file), "--redis-failure", "open"]) as g:
        yield g


def fresh_minute(need: float = 8.0) -> None:
    """Wait for the next minute when fewer than ``need`` seconds are left of this one."""
    left = 60 - time.time() % 60
    if left < need:
        time.sleep(left + 0.05)


def signed(content: str, *, stream: bool = False) -> bytes:
    t = format_timestamp(int(time.time() * 1000))
    body = {
        "model": "test-model",
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
        "d": time.strftime("%Y-%m-%d"),
        "t": t,
        "s": sign(t, content),
    }
    return json.dumps(body).encode()


def plain(content: str, **fields: Any) -> bytes:
    body = {"model": "test-model", "messages": [{"role": "user", "content": content}], **fields}
    return json.dumps(body).encode()


async def post(
    g: Gateway, data: bytes, *, key: str = "free", client: str = "198.51.100.7"
) -> tuple[int, CIMultiDict[str], bytes]:
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-Forwarded-For": client,  # believed: 127.0.0.1 is a trusted proxy
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{g.base_url}/chat/completions", data=data, headers=headers) as resp,
    ):
        return resp.status, CIMultiDict(resp.headers), await resp.read()


def error_of(body: bytes) -> dict[str, Any]:
    return json.loads(body)["error"]  # type: ignore[no-any-return]


# -- signed requests: replay and quota across replicas ---------------------------------------


async def test_a_body_accepted_by_one_replica_is_a_replay_on_the_other(
    replicas: tuple[Gateway, Gateway],
) -> None:
    a, b = replicas
    data = signed("replayed across replicas")
    assert (await post(a, data, client="198.51.100.1"))[0] == 200
    status, _, body = await post(b, data, client="198.51.100.1")
    assert status == 401 and error_of(body)["code"] == "signature_replayed"


async def test_a_quota_is_spent_across_replicas(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    for i, g in enumerate((a, b, a)):
        assert (await post(g, signed(f"quota {i}"), client="203.0.113.1"))[0] == 200
    status, headers, body = await post(b, signed("quota 3"), client="203.0.113.1")
    assert status == 429 and error_of(body)["code"] == "quota_exceeded"
    assert 1 <= int(headers["retry-after"]) <= 86400


async def test_racing_for_the_last_unit_admits_exactly_one(
    replicas: tuple[Gateway, Gateway],
) -> None:
    a, b = replicas
    for i, g in enumerate((a, b)):
        assert (await post(g, signed(f"race warm-up {i}"), client="203.0.113.2"))[0] == 200
    results = await asyncio.gather(
        *(post((a, b)[i % 2], signed(f"race {i}"), client="203.0.113.2") for i in range(20))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [429] * 19


# -- rate limits per key --------------------------------------------------------------------


def test_requests_per_minute_hold_across_replicas(replicas: tuple[Gateway, Gateway]) -> None:
    fresh_minute()
    clients = [openai.OpenAI(base_url=g.base_url, api_key=RPM_KEY, max_retries=0) for g in replicas]
    for i in range(3):
        raw = clients[i % 2].chat.completions.with_raw_response.create(
            model="test-model", messages=HELLO
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(2 - i)
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in raw.headers  # this key has no TPM
    with pytest.raises(openai.RateLimitError) as info:
        clients[1].chat.completions.create(model="test-model", messages=HELLO)
    headers = info.value.response.headers
    assert info.value.code == "rate_limit_exceeded" and "(RPM)" in info.value.message
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    # A key without limits is not counted.
    free = openai.OpenAI(base_url=replicas[0].base_url, api_key=UNLIMITED, max_retries=0)
    for _ in range(4):
        raw = free.chat.completions.with_raw_response.create(model="test-model", messages=HELLO)
        assert "x-ratelimit-limit-requests" not in raw.headers


async def test_tokens_per_minute_count_the_usage_of_answers_and_streams(
    replicas: tuple[Gateway, Gateway], up: Upstream
) -> None:
    a, b = replicas
    fresh_minute()
    # The test upstream's usage: words of the prompt + one token per echoed word.
    status, headers, _ = await post(a, plain("a b c d e"), key=TPM_KEY)
    assert status == 200
    assert headers["x-ratelimit-limit-tokens"] == "20"
    assert headers["x-ratelimit-remaining-tokens"] == "10"
    await asyncio.sleep(FLUSH_S + 0.1)  # tokens used are written in batches, soon after
    up.reset()
    status, headers, body = await post(b, plain("a b c d e f", stream=True), key=TPM_KEY)
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "10"  # before it ran
    assert b"[DONE]" in body and b'"usage"' not in body  # the client did not ask for it
    (req,) = up.requests
    assert req.body["stream_options"] == {"include_usage": True}  # the gateway did
    await asyncio.sleep(FLUSH_S + 0.1)
    status, headers, body = await post(a, plain("one more"), key=TPM_KEY)
    assert status == 429 and "(TPM)" in error_of(body)["message"]
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60


# -- the response cache ---------------------------------------------------------------------


async def test_an_answer_cached_by_one_replica_is_served_by_the_other(
    replicas: tuple[Gateway, Gateway], up: Upstream
) -> None:
    a, b = replicas
    up.reset()
    text = f"cache me {uuid.uuid4().hex}"
    status, headers, first = await post(a, plain(text, temperature=0), key=UNLIMITED)
    assert status == 200 and headers["x-ails-cache"] == "miss"
    status, headers, second = await post(b, plain(text, temperature=0), key=UNLIMITED)
    assert status == 200 and headers["x-ails-cache"] == "hit" and second == first
    alias = json.dumps(
        {"model": "gpt-x", "messages": [{"role": "user", "content": text}], "temperature": 0.0}
    ).encode()
    status, headers, _ = await post(b, alias, key=UNLIMITED)  # an alias shares its target's
    assert headers["x-ails-cache"] == "hit"
    status, headers, _ = await post(a, plain(text, temperature=0, user="u2"), key=UNLIMITED)
    assert headers["x-ails-cache"] == "hit"  # `user` does not change the answer
    assert len(up.requests) == 1
    # Not cached: another max_tokens, a stream, a sampled answer.
    _, headers, _ = await post(a, plain(text, temperature=0, max_tokens=1), key=UNLIMITED)
    assert headers["x-ails-cache"] == "miss"
    for _ in range(2):
        _, headers, _ = await post(b, plain(text, temperature=0, stream=True), key=UNLIMITED)
        assert "x-ails-cache" not in headers
        _, headers, _ = await post(b, plain(text, temperature=0.5), key=UNLIMITED)
        assert "x-ails-cache" not in headers
    assert len(up.requests) == 6


# -- what lies in Redis -----------------------------------------------------------------------


async def test_every_key_has_a_prefix_and_an_expiry(
    replicas: tuple[Gateway, Gateway], redis_srv: RedisServer
) -> None:
    a, _ = replicas
    await post(a, signed("for the key listing"), client="203.0.113.3")
    await post(a, plain("rate", temperature=0), key=RPM_KEY)
    await post(a, plain("tokens", temperature=0), key=TPM_KEY)
    await asyncio.sleep(FLUSH_S + 0.1)  # the tokens' batch
    client = redis.Redis.from_url(redis_srv.url)
    try:
        keys = [k.decode() for k in client.scan_iter(count=1000)]
        assert all(client.pttl(k) > 0 for k in keys)  # nothing without an expiry
        gateway_keys = [k for k in keys if not k.startswith("unit:")]  # the store tests'
        assert gateway_keys and all(k.startswith(PREFIX) for k in gateway_keys)
        kinds = {k.removeprefix(PREFIX).split(":")[0] for k in gateway_keys}
        assert {"replay", "quota", "rpm", "tpm", "cache"} <= kinds
        assert not any(secret in k for k in keys for secret in (RPM_KEY, TPM_KEY, UNLIMITED))
    finally:
        client.close()


# -- the store itself, against the real server ------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_srv: RedisServer
) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    s = RedisStore(redis_srv.url, prefix=f"unit:{uuid.uuid4().hex}:")
    yield s
    await s.aclose()


async def test_memory_and_redis_stores_behave_alike(store: StateStore) -> None:
    assert await store.seen_before("r", 5) is False
    assert await store.seen_before("r", 5) is True
    assert await store.seen_before("short", 0.05) is False
    counts = []
    for _ in range(3):
        allowed, (count,) = await store.consume_all([Counter("q", 2, 3600)])
        counts.append((allowed, count.used, count.remaining))
    assert counts == [(True, 1, 1), (True, 2, 0), (False, 2, 0)]
    # All or nothing: "b" is spent, so "a" is not charged either.
    assert (await store.consume_all([Counter("a", 5, 3600), Counter("b", 1, 3600)]))[0]
    allowed, (ca, cb) = await store.consume_all([Counter("a", 5, 3600), Counter("b", 1, 3600)])
    assert not allowed and (ca.used, cb.used) == (1, 1)
    # Tokens: added after the fact, checked with cost 0.
    assert await store.add({"t": 15, "u": 1}, 3600) == {"t": 15, "u": 1}
    assert (await store.consume_all([Counter("t", 20, 3600, cost=0)]))[0] is True
    assert await store.add({"t": 15}, 3600) == {"t": 30}
    allowed, (ct,) = await store.consume_all([Counter("t", 20, 3600, cost=0)])
    assert not allowed and (ct.used, ct.remaining) == (30, 0) and 0 < ct.reset_s <= 3600
    assert await store.cache_get("c") is None
    await store.cache_set("c", b'{"answer": 1}', 5)
    await store.cache_set("brief", b"x", 0.05)
    assert await store.cache_get("c") == b'{"answer": 1}'
    await asyncio.sleep(0.1)
    assert await store.cache_get("brief") is None
    assert await store.seen_before("short", 5) is False  # expired


async def test_concurrent_consumers_get_exactly_the_limit(redis_srv: RedisServer) -> None:
    prefix = f"unit:{uuid.uuid4().hex}:"
    stores = [RedisStore(redis_srv.url, prefix=prefix) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(stores[i % 2].consume("last", 10, 3600) for i in range(50))
        )
        assert sum(allowed for allowed, _, _ in results) == 10
        assert await stores[0].health() == "up"
    finally:
        for s in stores:
            await s.aclose()


def test_redis_py_is_loaded_only_with_redis() -> None:
    code = (
        "import sys; from ails.server import build_config, create_gateway; "
        "cli = {'upstream': ['http://127.0.0.1:9/v1']}; create_gateway(build_config(cli=cli)); "
        "assert 'redis' not in sys.modules, 'loaded without --redis'; "
        "create_gateway(build_config(cli={**cli, 'redis': 'redis://127.0.0.1:9/0'})); "
        "assert 'redis' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- Redis unreachable: the policies, and recovery (last: the restart empties Redis) ----------


async def test_a_hung_redis_costs_a_short_timeout_not_a_hang(
    replicas: tuple[Gateway, Gateway], redis_srv: RedisServer
) -> None:
    a, _ = replicas
    redis_srv.pause()
    try:
        started = time.monotonic()
        status, _, body = await post(a, signed("while Redis hangs"), client="203.0.113.4")
        assert status == 503 and error_of(body)["code"] == "state_unavailable"
        assert time.monotonic() - started < 1.5
    finally:
        redis_srv.resume()
    await wait_for_200(a, "after the hang")


async def wait_for_200(g: Gateway, label: str, timeout: float = 5.0) -> float:
    """Signed requests until one is accepted; the seconds it took."""
    started = time.monotonic()
    while True:
        status, _, body = await post(g, signed(f"{label} {time.monotonic()}"), client="192.0.2.9")
        if status == 200:
            return time.monotonic() - started
        assert status == 503, body
        assert time.monotonic() - started < timeout, "no recovery"
        await asyncio.sleep(0.2)


async def test_redis_down_follows_the_policy_and_recovers_when_back(
    replicas: tuple[Gateway, Gateway], gw_open: Gateway, redis_srv: RedisServer
) -> None:
    a, b = replicas
    redis_srv.stop()
    try:
        status, _, body = await post(a, signed("while Redis is down"), client="203.0.113.5")
        err = error_of(body)
        assert status == 503 and err["code"] == "state_unavailable"
        assert err["type"] == "server_error" and "Redis" in err["message"]
        status, _, body = await post(b, plain("limited"), key=RPM_KEY)
        assert status == 503 and error_of(body)["code"] == "state_unavailable"
        # Nothing needed from Redis: answered; the cache is simply bypassed.
        assert (await post(a, plain("unlimited"), key=UNLIMITED))[0] == 200
        status, headers, _ = await post(b, plain("cacheable", temperature=0), key=UNLIMITED)
        assert status == 200 and headers["x-ails-cache"] == "miss"
        # The open policy lets the signed request through, with a warning.
        assert (await post(gw_open, signed("open while down"), client="203.0.113.5"))[0] == 200
        assert gw_open.wait_for_log("skipped (--redis-failure open)")
        async with aiohttp.ClientSession() as session, session.get(f"{a.url}/health") as resp:
            assert await resp.json() == {"status": "ok", "redis": "down"}
    finally:
        redis_srv.start()  # the same port: the gateways reconnect by themselves
    for g in (a, b):
        assert await wait_for_200(g, "after the restart") < 5.0
    assert a.wait_for_log("is reachable again")
    async with aiohttp.ClientSession() as session, session.get(f"{a.url}/health") as resp:
        assert await resp.json() == {"status": "ok", "redis": "up"}


def test_a_stored_response_continues_on_the_other_replica(
    replicas: tuple[Gateway, Gateway], up: Upstream
) -> None:
    a, b = replicas
    on_a = openai.OpenAI(base_url=f"{a.url}/v1", api_key=UNLIMITED, max_retries=0)
    on_b = openai.OpenAI(base_url=f"{b.url}/v1", api_key=UNLIMITED, max_retries=0)
    first = on_a.responses.create(model="test-model", input="alpha beta")
    second = on_b.responses.create(model="test-model", input="gamma", previous_response_id=first.id)
    assert second.output_text == "gamma "
    assert up.requests[-1].body["messages"] == [
        {"role": "user", "content": "alpha beta"},
        {"role": "assistant", "content": "alpha beta "},
        {"role": "user", "content": "gamma"},
    ]
    assert on_b.responses.retrieve(first.id).output_text == "alpha beta "
    on_b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        on_a.responses.retrieve(first.id)
