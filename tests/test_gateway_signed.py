"""The signed protocol and API keys on the gateway, configured from a TOML file.

The seed's own example client (tests/seed_client.py, verbatim but for its URL
and one import) streams through ``ails serve --allow-signed``; stale, replayed
and wrongly signed bodies are refused with 401 and their codes; anonymous
signed clients have a per-address quota, and keyed clients do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from ails.signing import format_timestamp, sign
from gateway_proc import Gateway, run_serve
from upstream import Upstream

HERE = Path(__file__).resolve().parent
SEED_CLIENT = HERE / "seed_client.py"
UPSTREAM_KEY = "upstream-secret-123"
CLIENT_KEY = "client-key-1"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(api_key=UPSTREAM_KEY) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gw")
    (tmp / "keys.txt").write_text(f"# client keys\n{CLIENT_KEY}\n")
    (tmp / "gateway.toml").write_text(
        f"""
[serve]
allow_signed = true
signed_quota = "3/day"
trusted_proxies = ["127.0.0.1"]
max_retries = 0

[serve.aliases]
"gpt-3.5-turbo" = "test-model"

[[serve.upstreams]]
url = "{up.base_url}"
key_env = "TEST_GW_UPSTREAM_KEY"
"""
    )
    args = ["--config", str(tmp / "gateway.toml"), "--api-key-file", str(tmp / "keys.txt")]
    with Gateway(args, env={"TEST_GW_UPSTREAM_KEY": UPSTREAM_KEY}) as g:
        yield g


@pytest.fixture
def upr(up: Upstream) -> Upstream:
    up.reset()
    return up


def signed_body(
    content: str, *, now_ms: int | None = None, model: str = "gpt-3.5-turbo"
) -> dict[str, Any]:
    """A body as the seed builds it: its key order, ``d``/``t``/``s`` last."""
    t = format_timestamp(now_ms if now_ms is not None else int(time.time() * 1000))
    return {
        "model": model,
        "temperature": 0.6,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
        "d": time.strftime("%Y-%m-%d"),
        "t": t,
        "s": sign(t, content),
    }


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


async def post(
    g: Gateway, data: bytes, *, client: str, key: str = "free"
) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-Forwarded-For": client,  # believed: 127.0.0.1 is a trusted proxy here
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{g.base_url}/chat/completions", data=data, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def error_of(body: bytes) -> dict[str, Any]:
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "code", "param"}
    return err  # type: ignore[no-any-return]


# -- the seed's client -----------------------------------------------------------------


def test_seed_example_streams_through_the_gateway(gw: Gateway, upr: Upstream) -> None:
    done = subprocess.run(
        [sys.executable, str(SEED_CLIENT)],
        env={**os.environ, "AILS_GATEWAY_URL": gw.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, who are you? "
    (req,) = upr.requests
    # The signed fields were checked and removed; the alias resolved; our key, not "free".
    assert set(req.body) == {"model", "messages", "stream", "temperature"}
    assert req.body["model"] == "test-model" and req.body["temperature"] == 0.6
    assert req.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_the_naive_client_reads_text_that_contains_data_colon(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed's own function, run with another question (its example call is cut off).
    source = SEED_CLIENT.read_text(encoding="utf-8").split("# Пример вызова функции")[0]
    namespace: dict[str, Any] = {"__name__": "seed_client"}
    exec(compile(source, str(SEED_CLIENT), "exec"), namespace)
    monkeypatch.setenv("AILS_GATEWAY_URL", gw.url)
    messages = [{"role": "user", "content": "print data: 1 and data: 2"}]
    tokens = list(namespace["_create_completion"](model="gpt-3.5-turbo", messages=messages))
    assert "".join(tokens) == "print data: 1 and data: 2 "


# -- refusals --------------------------------------------------------------------------------


async def test_replayed_body_is_refused(gw: Gateway) -> None:
    data = dumps(signed_body("Hello, who are you?"))
    status, _, _ = await post(gw, data, client="198.51.100.1")
    assert status == 200
    status, _, body = await post(gw, data, client="198.51.100.1")
    assert status == 401
    err = error_of(body)
    assert err["code"] == "signature_replayed" and "already used" in err["message"]


async def test_stale_timestamp_is_refused(gw: Gateway) -> None:
    hour_ago = int(time.time() * 1000) - 3_600_000
    status, _, body = await post(
        gw, dumps(signed_body("Hello", now_ms=hour_ago)), client="198.51.100.2"
    )
    assert status == 401
    err = error_of(body)
    assert err["code"] == "signature_stale" and "freshness window" in err["message"]


async def test_wrong_signature_is_refused(gw: Gateway, upr: Upstream) -> None:
    body = signed_body("Hello")
    body["messages"][0]["content"] = "Hello, tampered"
    status, _, raw = await post(gw, dumps(body), client="198.51.100.3")
    assert status == 401
    err = error_of(raw)
    assert err["code"] == "signature_invalid" and "does not match" in err["message"]
    assert upr.requests == []


def test_malformed_signed_body_is_400(gw: Gateway) -> None:
    body = signed_body("Hello")
    body["t"] = body["t"][:-1] + "2"  # an even last digit is never a valid t
    client = openai.OpenAI(base_url=gw.base_url, api_key="free", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=body["messages"],
            extra_body={k: body[k] for k in "dts"},
        )
    assert info.value.code == "signature_malformed"


def test_anonymous_quota_is_per_address_with_retry_after(gw: Gateway) -> None:
    def ask(address: str, key: str = "free") -> str:
        body = signed_body(f"question at {time.time_ns()}")
        client = openai.OpenAI(
            base_url=gw.base_url,
            api_key=key,
            max_retries=0,
            default_headers={"X-Forwarded-For": f"10.9.9.9, {address}"},
        )
        reply = client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=body["messages"],
            extra_body={k: body[k] for k in "dts"},
        )
        return reply.choices[0].message.content or ""

    for _ in range(3):
        assert ask("203.0.113.9").startswith("question at")
    with pytest.raises(openai.RateLimitError) as info:
        ask("203.0.113.9")
    assert info.value.code == "quota_exceeded"
    assert 0 < int(info.value.response.headers["retry-after"]) <= 86400
    assert ask("203.0.113.10")  # another address has its own quota
    for _ in range(4):  # a client with a key is not limited by the anonymous quota
        assert ask("203.0.113.9", key=CLIENT_KEY)


# -- API keys ---------------------------------------------------------------------------------


async def test_a_missing_key_is_401(gw: Gateway) -> None:
    body = json.dumps({"model": "test-model", "messages": HELLO})
    async with aiohttp.ClientSession() as session:
        for path, data in (("/chat/completions", body), ("/models", None)):
            method = "POST" if data else "GET"
            async with session.request(
                method, gw.base_url + path, data=data, headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 401
                err = error_of(await resp.read())
                assert err["code"] == "invalid_api_key" and "Bearer" in err["message"]


def test_api_keys_are_required_and_secrets_never_shown(gw: Gateway, upr: Upstream) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="test-model", messages=HELLO)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    client = openai.OpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0)
    reply = client.chat.completions.create(model="test-model", messages=HELLO)
    assert reply.choices[0].message.content == "Hello, who are you? "
    assert upr.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    models = client.models.list()
    assert {m.id for m in models} == {"test-model", "upstream1/test-model", "gpt-3.5-turbo"}
    assert UPSTREAM_KEY not in models.model_dump_json()
    assert gw.wait_for_log("GET /v1/models 200")
    assert UPSTREAM_KEY not in gw.log and CLIENT_KEY not in gw.log


# -- the command line refuses what cannot be safe ---------------------------------------------


def test_public_bind_without_a_key_is_refused() -> None:
    done = run_serve(["--host", "0.0.0.0", "--upstream", "http://127.0.0.1:9/v1"])
    assert done.returncode == 2
    assert "refusing to serve on '0.0.0.0'" in done.stderr and "--insecure-public" in done.stderr


def test_upstream_key_count_must_fit() -> None:
    done = run_serve(
        ["--upstream", "http://127.0.0.1:9/v1"] * 1
        + ["--upstream", "http://127.0.0.1:10/v1", "--upstream", "http://127.0.0.1:11/v1"]
        + ["--upstream-key", "a", "--upstream-key", "b"]
    )
    assert done.returncode == 2 and "2 upstream keys for 3 upstreams" in done.stderr


def test_the_access_log_names_who_called_never_the_key(gw: Gateway, upr: Upstream) -> None:
    import hashlib

    client = openai.OpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(model="test-model", messages=HELLO)
    rid = reply.headers["x-request-id"]
    expected = "who=key:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()[:8]
    assert gw.wait_for_log(f"rid={rid} {expected}")
    done = subprocess.run(
        [sys.executable, str(SEED_CLIENT)],
        env={**os.environ, "AILS_GATEWAY_URL": gw.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert gw.wait_for_log("POST /v1/chat/completions 200") and gw.wait_for_log("who=signed")
    assert CLIENT_KEY not in gw.log
