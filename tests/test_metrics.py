"""GET /metrics and --log-format json, against a real gateway on loopback.

One ``ails serve`` (the embedded model, and two upstreams that list the same
models, so a failure falls back) is scraped with Prometheus' own text parser
before and after a known set of requests: every count, token sum and
histogram count is asserted exactly, as the difference of the two scrapes.
Its log is JSON: every line parses, access lines carry their fields, and no
key (the hostile and leak tests' keys) is in the log or the scrape.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ails.local.speed import WINDOW, DecodeSpeed
from ails.server.records import RequestRecord
from gateway_proc import Gateway
from test_doors import UPSTREAM_PASSWORD
from test_security import CLIENT_KEY, UPSTREAM_KEY
from upstream import Upstream

ALICE_KEY = "sk-alice-00112233445566778899"
BOB_KEY = "sk-bob-99887766554433221100"
METRICS_KEY = "sk-metrics-0a1b2c3d4e5f60718293"
MODELS = ["test-model", "status:500", "flaky:1:503"]
HELLO = [{"role": "user", "content": "Hello, who are you?"}]
SECRETS = [CLIENT_KEY, ALICE_KEY, BOB_KEY, METRICS_KEY, UPSTREAM_KEY, UPSTREAM_PASSWORD]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(api_key=UPSTREAM_KEY, models=MODELS) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = tmp_path_factory.mktemp("metrics") / "serve.toml"
    config.write_text(
        f"""
[keys.alice]
key = "{ALICE_KEY}"

[keys.bob]
key = "{BOB_KEY}"
rpm = 1
"""
    )
    args = [
        "--config", str(config), "--backend", "local",
        "--upstream", up.base_url, "--upstream", up.base_url, "--upstream-key", UPSTREAM_KEY,
        "--api-key", CLIENT_KEY, "--max-retries", "1",
        "--metrics-port", "0", "--log-format", "json",
    ]  # fmt: skip
    env = {"AILS_SERVE_METRICS_KEY": METRICS_KEY, "AILS_LOCAL_PARALLEL": "1"}
    with Gateway(args, env=env, start_timeout=120) as g:
        yield g


def call(
    g: Gateway, method: str, path: str, body: Any = None, key: str | None = CLIENT_KEY
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(g.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def chat(g: Gateway, model: str, key: str = CLIENT_KEY, **extra: Any) -> tuple[int, bytes]:
    status, _, raw = call(
        g, "POST", "/v1/chat/completions", {"model": model, "messages": HELLO, **extra}, key
    )
    return status, raw


def scrape_text(url: str, key: str | None = None) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", parts.path, headers={"Authorization": f"Bearer {key}"} if key else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(g: Gateway) -> Samples:
    status, text = scrape_text(g.metrics_url)
    assert status == 200
    return parse(text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return [json.loads(e) for e in events if e != "[DONE]"]


def test_the_embedded_models_decode_speed_is_a_gauge(gw: Gateway) -> None:
    # First in this module: the gateway's model has not generated yet.
    name = "ails_local_tokens_per_second"
    before = scrape(gw)
    assert (name, frozenset({("backend", "local")})) in before
    assert value(before, name, backend="local") == 0
    status, raw = chat(gw, "default", max_tokens=8, temperature=0, stream=True)
    assert status == 200
    chunks = sse_chunks(raw)
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
    assert value(scrape(gw), name, backend="local") > 0


def test_decode_speed_is_tokens_over_seconds_of_the_last_generations() -> None:
    speed = DecodeSpeed()
    assert speed.tokens_per_second() == 0
    speed.add(0, 1.0)  # one token: nothing decoded after it
    assert speed.tokens_per_second() == 0
    speed.add(30, 1.0)
    speed.add(10, 1.0)
    assert speed.tokens_per_second() == 20
    for _ in range(WINDOW):
        speed.add(5, 1.0)
    assert speed.tokens_per_second() == 5  # the two older ones left the window


@pytest.mark.parametrize(
    ("raw", "tokens"),
    [
        # A "usage" inside the content is escaped: the top level's is read.
        (
            b'{"choices":[{"message":{"content":"\\"usage\\": {\\"prompt_tokens\\": 99}"}}],'
            b'"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8},"x":"y"}',
            (3, 5),
        ),
        # A nested "usage" after the top level's: the whole answer is read.
        (
            b'{"usage":{"prompt_tokens":3,"completion_tokens":5},"choices":[{"extra":'
            b'{"usage":{"prompt_tokens":1000,"completion_tokens":1}}}]}',
            (3, 5),
        ),
        (b'{"usage" : {"prompt_tokens":2,"completion_tokens":4}}', (2, 4)),
        (b'{"object":"list","data":[],"usage":{"prompt_tokens":7,"total_tokens":7}}', (7, 0)),
        (b'{"choices":[]}', (0, 0)),
        (b"not json", (0, 0)),
    ],
)
def test_a_whole_answers_tokens_are_its_top_level_usage(
    raw: bytes, tokens: tuple[int, int]
) -> None:
    record = RequestRecord(0.0)
    record.answer(raw)
    assert (record.prompt_tokens, record.completion_tokens) == tokens


def test_a_known_set_of_requests_is_counted_exactly(gw: Gateway, up: Upstream) -> None:
    before = scrape(gw)
    usage: dict[str, list[int]] = {}  # model -> [prompt, completion] the clients saw
    by_key: dict[str, list[int]] = {}  # key id -> the same

    def saw(model: str, prompt: int, completion: int, key: str = "alice") -> None:
        for table, name in ((usage, model), (by_key, key)):
            got = table.setdefault(name, [0, 0])
            got[0] += prompt
            got[1] += completion

    status, raw = chat(gw, "test-model", key=ALICE_KEY)  # ok
    assert status == 200
    u = json.loads(raw)["usage"]
    saw("test-model", u["prompt_tokens"], u["completion_tokens"])
    # A stream that asked for usage, and one that did not: the gateway passes
    # the request on as it is, so that one's tokens are not known.
    status, raw = chat(
        gw, "test-model", key=ALICE_KEY, stream=True, stream_options={"include_usage": True}
    )
    assert status == 200
    u = sse_chunks(raw)[-1]["usage"]
    saw("test-model", u["prompt_tokens"], u["completion_tokens"])
    status, raw = chat(gw, "test-model", key=ALICE_KEY, stream=True)
    assert status == 200 and all(c.get("usage") is None for c in sse_chunks(raw))
    assert "stream_options" not in up.requests[-1].body
    assert chat(gw, "test-model", key="sk-wrong-key-000000000000")[0] == 401
    assert call(gw, "GET", "/v1/no-such-thing")[0] == 404
    assert chat(gw, "no-such-model")[0] == 404
    assert chat(gw, "status:500")[0] == 502  # upstream1 twice, then upstream2 twice
    status, raw = chat(gw, "flaky:1:503")  # a 503, then the retry answers
    assert status == 200
    u = json.loads(raw)["usage"]
    saw("flaky:1:503", u["prompt_tokens"], u["completion_tokens"], key=key_id(CLIENT_KEY))
    status, raw = chat(gw, "test-model", key=BOB_KEY)  # bob's one request a minute
    assert status == 200
    u = json.loads(raw)["usage"]
    saw("test-model", u["prompt_tokens"], u["completion_tokens"], key="bob")
    status, raw = chat(gw, "test-model", key=BOB_KEY)
    assert status == 429 and json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    status, raw = chat(gw, "default", max_tokens=3, temperature=0)  # the embedded model
    assert status == 200
    u = json.loads(raw)["usage"]
    local_usage = (u["prompt_tokens"], u["completion_tokens"])
    assert local_usage[1] >= 1
    saw("default", *local_usage, key=key_id(CLIENT_KEY))
    status, _, raw = call(
        gw,
        "POST",
        "/v1/messages",
        {"model": "test-model", "max_tokens": 16, "messages": HELLO},
        key=ALICE_KEY,
    )
    assert status == 200
    u = json.loads(raw)["usage"]
    saw("test-model", u["input_tokens"], u["output_tokens"])

    after = scrape(gw)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat_ep = {"endpoint": "/v1/chat/completions", "dialect": "openai"}
    requests = "ails_requests_total"
    # Bob's first request was also ok: 4 on test-model (alice x3, bob), 1 flaky, 1 local.
    assert delta(requests, **chat_ep, model="test-model", status_class="2xx") == 4
    assert delta(requests, **chat_ep, model="flaky:1:503", status_class="2xx") == 1
    assert delta(requests, **chat_ep, model="default", status_class="2xx") == 1
    # The wrong key and the unknown model: no served name, so "other"; bob's 429 is test-model.
    assert delta(requests, **chat_ep, model="other", status_class="4xx") == 2
    assert delta(requests, **chat_ep, model="test-model", status_class="4xx") == 1
    assert delta(requests, **chat_ep, model="status:500", status_class="5xx") == 1
    assert delta(requests, endpoint="other", dialect="none", model="other", status_class="4xx") == 1
    assert (
        delta(
            requests,
            endpoint="/v1/messages",
            dialect="anthropic",
            model="test-model",
            status_class="2xx",
        )
        == 1
    )
    for hist in ("ails_request_duration_seconds", "ails_time_to_first_byte_seconds"):
        assert delta(f"{hist}_count", endpoint="/v1/chat/completions", model="test-model") == 5
        assert delta(f"{hist}_count", endpoint="/v1/chat/completions", model="status:500") == 1
        assert (
            delta(f"{hist}_bucket", endpoint="/v1/chat/completions", model="test-model", le="+Inf")
            == 5
        )
    # Tokens: what the clients saw (the local model's too), by model, key and backend.
    assert set(usage) == {"test-model", "flaky:1:503", "default"}
    assert set(by_key) == {"alice", "bob", key_id(CLIENT_KEY)}
    for kind, i in (("prompt", 0), ("completion", 1)):
        for model, got in usage.items():
            assert delta("ails_tokens_total", model=model, kind=kind) == got[i]
        for key, got in by_key.items():
            assert delta("ails_key_tokens_total", key_id=key, kind=kind) == got[i]
        assert delta("ails_backend_tokens_total", backend="local", kind=kind) == local_usage[i]
        assert delta("ails_backend_tokens_total", backend="upstream1", kind=kind) == (
            usage["test-model"][i] + usage["flaky:1:503"][i]
        )
    # Attempts: 5 on test-model, 2 flaky, 2 status:500 on upstream1; 2 on upstream2.
    assert delta("ails_upstream_attempts_total", backend="upstream1") == 9
    assert delta("ails_upstream_attempts_total", backend="upstream2") == 2
    assert delta("ails_upstream_attempts_total", backend="local") == 1
    assert delta("ails_upstream_failures_total", backend="upstream1", code="500") == 2
    assert delta("ails_upstream_failures_total", backend="upstream2", code="500") == 2
    assert delta("ails_upstream_failures_total", backend="upstream1", code="503") == 1
    assert delta("ails_upstream_retries_total", backend="upstream1", code="500") == 1
    assert delta("ails_upstream_retries_total", backend="upstream1", code="503") == 1
    assert delta("ails_upstream_fallbacks_total", backend="upstream1", code="500") == 1
    assert delta("ails_upstream_fallbacks_total", backend="upstream2", code="500") == 0
    assert delta("ails_limit_refusals_total", reason="rate_limit_exceeded") == 1
    assert delta("ails_streams_without_usage_total", backend="upstream1") == 1
    assert value(after, "ails_streams_in_flight") == 0
    assert value(after, "ails_local_slots", backend="local") == 1
    assert value(after, "ails_local_slots_busy", backend="local") == 0
    assert value(after, "ails_local_queued", backend="local") == 0
    assert value(after, "ails_model_list_failures_total", backend="upstream1") == 0
    # A client connection held open shows while it is open.
    held = http.client.HTTPConnection(urlsplit(gw.url).hostname or "", urlsplit(gw.url).port)
    try:
        held.request("GET", "/health")
        assert held.getresponse().read() == b'{"status":"ok"}'
        assert value(scrape(gw), "ails_connections_open") >= 1
    finally:
        held.close()


def test_no_key_is_in_the_scrape_or_the_log(gw: Gateway) -> None:
    # A key in the places a client controls: the model name and the path.
    assert chat(gw, CLIENT_KEY)[0] == 404
    assert call(gw, "GET", f"/v1/{CLIENT_KEY}")[0] == 404
    status, text = scrape_text(gw.metrics_url)
    assert status == 200
    assert gw.wait_for_log(f"GET /v1/{'***'} 404") or gw.wait_for_log("GET /v1/*** 404")
    log = gw.log
    for secret in SECRETS:
        assert secret not in text and secret[:12] not in text
        assert secret not in log and secret[:12] not in log
        # Not the digest either: an id is at most 8 hex digits of it.
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert digest[:16] not in text and digest[:16] not in log


def test_every_log_line_is_json_with_the_access_fields(gw: Gateway) -> None:
    body = {
        "model": "test-model",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, raw = call(gw, "POST", "/v1/chat/completions", body, key=ALICE_KEY)
    assert status == 200
    rid = headers["x-request-id"]
    assert gw.wait_for_log(rid)
    lines = [json.loads(line) for line in gw.lines if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("request_id") == rid]
    assert len(access) == 1
    line = access[0]
    assert line["logger"] == "ails.access"
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions"
    assert line["status"] == 200 and line["key_id"] == "alice"
    assert line["dialect"] == "openai" and line["model"] == "test-model"
    assert line["backend"] == "upstream1"
    # tests/upstream.py: P = words of the messages, C = content chunks sent.
    usage = sse_chunks(raw)[-1]["usage"]
    assert usage["prompt_tokens"] == len(HELLO[0]["content"].split())
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert 0 < line["first_byte_ms"] <= line["total_ms"]
    # Bytes sent, head and framing included (nginx's $bytes_sent).
    assert len(raw) < line["bytes"] < len(raw) + 1024
    assert line["time"].endswith("Z")
    # The model name a client sent that holds a key is redacted in its line.
    status, headers, raw = call(
        gw, "POST", "/v1/chat/completions", {"model": CLIENT_KEY, "messages": HELLO}
    )
    assert status == 404
    assert gw.wait_for_log(headers["x-request-id"])
    refused = [
        json.loads(line)
        for line in gw.lines
        if headers["x-request-id"] in line and '"ails.access"' in line
    ]
    assert len(refused) == 1
    assert refused[0]["model"] == "***" and refused[0]["backend"] is None
    assert refused[0]["key_id"] == key_id(CLIENT_KEY)
    assert len(raw) < refused[0]["bytes"] < len(raw) + 1024


def test_metrics_on_the_main_port_need_the_metrics_key(gw: Gateway) -> None:
    url = f"{gw.url}/metrics"
    assert scrape_text(url)[0] == 401
    assert scrape_text(url, CLIENT_KEY)[0] == 401  # a client key is not the metrics key
    status, text = scrape_text(url, METRICS_KEY)
    assert status == 200
    assert value(parse(text), "ails_build_info", version=ails_version()) == 1
    # --metrics-port listens on loopback unless told otherwise, without a key.
    assert urlsplit(gw.metrics_url).hostname == "127.0.0.1"
    assert scrape_text(gw.metrics_url)[0] == 200


def ails_version() -> str:
    from ails._version import __version__

    return __version__


# -- in-process gateways: a registry each; no metrics key, no /metrics on the main port ------


async def serve(up: Upstream, **options: Any) -> tuple[Any, str]:
    from aiohttp import web

    from ails.server.app import build_app
    from ails.server.build import create_gateway
    from ails.server.config import build_config

    config = build_config(
        cli={"upstream": [up.base_url], "upstream_key": [UPSTREAM_KEY], **options}
    )
    gateway = create_gateway(config, environ={})
    runner = web.AppRunner(build_app(gateway, ui=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def test_gateways_in_one_process_count_apart(up: Upstream) -> None:
    runners = []
    try:
        a_runner, a = await serve(up, metrics_key=METRICS_KEY)
        runners.append(a_runner)
        b_runner, b = await serve(up, metrics_key=METRICS_KEY)
        runners.append(b_runner)
        c_runner, c = await serve(up)  # metrics, but no key: not on the main port
        runners.append(c_runner)
        d_runner, d = await serve(up, metrics=False)
        runners.append(d_runner)
        body = {"model": "test-model", "messages": HELLO}
        auth = {"Authorization": f"Bearer {METRICS_KEY}"}
        async with aiohttp.ClientSession() as s:
            for url, times in ((a, 1), (b, 2)):
                for _ in range(times):
                    async with s.post(f"{url}/v1/chat/completions", json=body) as r:
                        assert r.status == 200
            counts = []
            for url in (a, b):
                async with s.get(f"{url}/metrics", headers=auth) as r:
                    assert r.status == 200
                    samples = parse(await r.text())
                counts.append(
                    value(
                        samples,
                        "ails_requests_total",
                        endpoint="/v1/chat/completions",
                        dialect="openai",
                        model="test-model",
                        status_class="2xx",
                    )
                )
            assert counts == [1, 2]
            for url in (c, d):
                async with s.get(f"{url}/metrics", headers=auth) as r:
                    assert r.status == 404
    finally:
        for runner in runners:
            await runner.cleanup()


def test_metrics_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    from ails.errors import ConfigError
    from ails.server.config import build_config

    with pytest.raises(ConfigError, match="--no-metrics"):
        build_config(
            cli={"upstream": ["http://127.0.0.1:9/v1"], "metrics": False, "metrics_port": 0}
        )
    with pytest.raises(ConfigError, match="--metrics-key"):
        build_config(
            cli={
                "upstream": ["http://127.0.0.1:9/v1"],
                "metrics_key": "short",
                "host": "0.0.0.0",
                "api_key": ["a" * 40],
            }
        )


async def test_shared_state_health_and_latency(up: Upstream, tmp_path: Path) -> None:
    from redis_proc import RedisServer

    with RedisServer(tmp_path) as redis:
        runner, url = await serve(
            up, metrics_key=METRICS_KEY, redis=redis.url, api_key=[CLIENT_KEY], rpm=100
        )
        try:
            auth = {"Authorization": f"Bearer {METRICS_KEY}"}
            body = {"model": "test-model", "messages": HELLO}
            async with aiohttp.ClientSession() as s:

                async def scrape_it() -> Samples:
                    async with s.get(f"{url}/metrics", headers=auth) as r:
                        assert r.status == 200
                        return parse(await r.text())

                before = await scrape_it()
                client = {"Authorization": f"Bearer {CLIENT_KEY}"}
                async with s.post(f"{url}/v1/chat/completions", json=body, headers=client) as r:
                    assert r.status == 200  # its rpm unit is charged in Redis
                after = await scrape_it()
                assert value(after, "ails_shared_state_up") == 1
                calls = "ails_shared_state_call_seconds_count"
                assert value(after, calls) > value(before, calls)
                assert value(after, "ails_shared_state_errors_total") == 0
                redis.stop()
                async with s.post(f"{url}/v1/chat/completions", json=body, headers=client) as r:
                    assert r.status == 503  # --redis-failure closed
                down = await scrape_it()
                assert value(down, "ails_shared_state_up") == 0
                assert value(down, "ails_shared_state_errors_total") >= 1
                assert value(down, "ails_limit_refusals_total", reason="state_unavailable") == 1
        finally:
            await runner.cleanup()


async def test_failed_model_list_refreshes_are_counted(up: Upstream) -> None:
    from redis_proc import free_port

    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    runner, url = await serve(up, metrics_key=METRICS_KEY, upstream=[up.base_url, closed])
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}) as r,
        ):
            samples = parse(await r.text())
        # The start's one refresh: the second upstream could not be listed.
        assert value(samples, "ails_model_list_failures_total", backend="upstream2") == 1
        assert value(samples, "ails_model_list_failures_total", backend="upstream1") == 0
    finally:
        await runner.cleanup()
