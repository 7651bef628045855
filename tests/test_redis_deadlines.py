"""A Redis write that timed out cannot land later (issue 14, item 7).

A real ``redis-server`` is stopped (SIGSTOP) while the gateway sends it a rate
limit charge and a replay entry; each request gets 503; when Redis resumes it
runs the queued commands, and their deadline (checked on Redis's own clock)
makes them do nothing: the counters hold exactly what was served.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ails.signing import signature_fields
from door_matrix import door
from gateway_proc import Gateway
from redis_proc import RedisServer, require_redis_server
from upstream import Upstream

KEY = "sk-client-rpm-0123456789"
PREFIX = "deadline:"


@pytest.fixture()
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path / "redis") as server:
        yield server


def post(g: Gateway, body: dict[str, object]) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", int(g.url.rsplit(":", 1)[1]), timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    code = json.loads(data)["error"]["code"] if resp.status >= 400 else None
    return resp.status, code


def signed(text: str) -> dict[str, object]:
    messages = [{"role": "user", "content": text}]
    return {"model": "test-model", "messages": messages} | signature_fields(
        text, now_ms=int(time.time() * 1000)
    )


def test_a_timed_out_write_does_nothing_when_redis_comes_back(redis_srv: RedisServer) -> None:
    left = 60 - time.time() % 60
    if left < 10:  # the rate-limit window is a minute: stay in one
        time.sleep(left + 0.05)
    with Upstream(models=["test-model"]) as up:
        args = [
            "--upstream", up.base_url, "--api-key", KEY, "--rpm", "100",
            "--redis", redis_srv.url, "--redis-prefix", PREFIX, "--redis-timeout", "0.25",
        ]  # fmt: skip
        with Gateway(args) as g:
            plain = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
            served = 0
            # Warm: both scripts loaded, the clocks compared.
            assert post(g, plain) == (200, None)
            assert post(g, signed("warm")) == (200, None)
            served += 2
            redis_srv.pause()
            try:
                assert post(g, plain) == expected("redis-late")
                time.sleep(1.1)  # past the circuit breaker: the next call is sent
                refused = signed("refused")
                assert post(g, refused) == expected("redis-late")
            finally:
                redis_srv.resume()
            time.sleep(0.5)  # Redis runs what was queued
            client = redis.Redis.from_url(redis_srv.url)
            try:
                rpm = [k for k in client.scan_iter(f"{PREFIX}rpm:*")]
                (counter,) = rpm
                replay = [k.decode() for k in client.scan_iter(f"{PREFIX}replay:*")]
                counted = int(client.get(counter) or 0)
            finally:
                client.close()
            assert counted == served, f"{counted} counted for {served} served"
            assert len(replay) == 1  # the warm one's; none for the refused request
            assert str(refused["s"]) not in replay[0]
            # And Redis is used again at once.
            time.sleep(1.1)
            assert post(g, plain) == (200, None)


def expected(key: str) -> tuple[int | None, str | None]:
    row = door(key)
    return row.status, row.code
