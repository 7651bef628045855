"""The gateway's pure parts with plain values: quotas, the state store, keys,
client addresses, framing, validation, error mapping and configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from ails.errors import (
    AuthFailed,
    BadRequest,
    ConfigError,
    NotFound,
    ProtocolError,
    RateLimited,
    Timeout,
    UpstreamUnavailable,
)
from ails.providers.base import Batch
from ails.server.app import cap_tokens
from ails.server.auth import Authenticator, bearer_token
from ails.server.config import build_config, is_loopback, parse_alias
from ails.server.errors import GatewayError, Redactor, from_ails_error, stream_error_event
from ails.server.limits import Quota, parse_quota, window_slot
from ails.server.openapi import openapi_document
from ails.server.state import MemoryStore
from ails.server.validation import validate, validate_completions
from ails.types import Chunk, ChunkChoice, Delta, Usage
from ails.wire import frame_batch

# -- quotas and the store ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [("15/day", 15, 86400), ("100/hour", 100, 3600), ("5/10min", 5, 600), ("2/s", 2, 1),
     (" 3 / days ", 3, 86400), ("1/minute", 1, 60)],
)  # fmt: skip
def test_parse_quota(text: str, limit: int, window: float) -> None:
    assert parse_quota(text) == Quota(limit, window)


@pytest.mark.parametrize("text", ["15", "x/day", "0/day", "5/fortnight", "5/0s", "-1/day"])
def test_parse_quota_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_quota(text)


def test_window_slot_is_aligned_to_the_epoch() -> None:
    assert window_slot(86400 * 10 + 100, 86400) == (10, 86300)
    assert window_slot(59.5, 60) == (0, 0.5)


async def test_memory_store_replay_cache_expires() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    assert await store.seen_before("a", 10) is False
    assert await store.seen_before("a", 10) is True
    assert await store.seen_before("b", 10) is False
    now[0] += 10.5
    assert await store.seen_before("a", 10) is False  # expired, recorded afresh
    assert await store.seen_before("a", 10) is True
    assert "b" not in store._seen  # pruned


async def test_memory_store_quota_counts_per_window() -> None:
    now = [86400.0 * 3 + 10]
    store = MemoryStore(clock=lambda: now[0])
    results = [await store.consume("k", 2, 86400) for _ in range(3)]
    assert [r[:2] for r in results] == [(True, 1), (True, 0), (False, 0)]
    assert results[2][2] == pytest.approx(86390)
    assert (await store.consume("other", 2, 86400))[0] is True
    now[0] += 86400  # the next day
    assert (await store.consume("k", 2, 86400))[:2] == (True, 1)


# -- keys and addresses ----------------------------------------------------------------


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_key_check_matches_any_configured_key() -> None:
    auth = Authenticator(api_keys=["k1", "k2"], store=MemoryStore())
    assert auth.key_valid("Bearer k1") and auth.key_valid("Bearer k2")
    assert not auth.key_valid("Bearer k3") and not auth.key_valid(None)
    assert not Authenticator(store=MemoryStore()).key_valid("Bearer anything")


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("127.0.0.1", "1.2.3.4", [], "127.0.0.1"),  # no trusted proxy: the header is ignored
        ("127.0.0.1", "9.9.9.9, 1.2.3.4", ["127.0.0.1"], "1.2.3.4"),  # the last hop only
        ("10.0.0.5", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("192.0.2.1", "1.2.3.4", ["127.0.0.1"], "192.0.2.1"),  # not from the proxy
        ("127.0.0.1", "garbage", ["127.0.0.1"], "127.0.0.1"),
        ("127.0.0.1", None, ["127.0.0.1"], "127.0.0.1"),
    ],
)
def test_client_address(peer: str, xff: str | None, trusted: list[str], expected: str) -> None:
    class _Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (peer, 5555) if name == "peername" else default

    headers = {"X-Forwarded-For": xff} if xff else {}
    request = make_mocked_request("POST", "/", headers=headers, transport=_Transport())
    auth = Authenticator(store=MemoryStore(), trusted_proxies=trusted)
    assert auth.client_address(request) == expected


# -- framing ----------------------------------------------------------------------------


def _chunk(content: str | None = None, *, usage: Usage | None = None, empty: bool = False) -> Chunk:
    choices = [] if empty else [ChunkChoice(delta=Delta(content=content))]
    return Chunk(id="c", created=1, model="m", choices=choices, usage=usage)


def test_frame_batch_keeps_the_upstream_text_and_stays_naive_safe() -> None:
    raw = [
        '{"choices":[{"delta":{"content":"a data: b"}}],"x_vendor":1}',
        '{"a":\n1,"choices":[1]}',
    ]
    data = frame_batch(Batch([_chunk("a data: b"), _chunk("x")], raw), include_usage=False)
    assert data == (
        b'data: {"choices":[{"delta":{"content":"a data\\u003a b"}}],"x_vendor":1}\n\n'
        b'data: {"a": 1,"choices":[1]}\n\n'
    )
    first = json.loads(data.split(b"\n\n")[0][len(b"data: ") :])
    assert first["choices"][0]["delta"]["content"] == "a data: b"


def test_frame_batch_drops_usage_only_chunks_unless_asked() -> None:
    usage = _chunk(usage=Usage(1, 2, 3), empty=True)
    batch = Batch([usage], ['{"usage":{}}'])
    assert frame_batch(batch, include_usage=False) == b""
    assert frame_batch(batch, include_usage=True) == b'data: {"usage":{}}\n\n'


def test_frame_batch_encodes_the_chunks_ails_made_as_whole_openai_chunks() -> None:
    batch = [_chunk("hi data: x", usage=Usage(1, 1, 2)), _chunk(usage=Usage(1, 1, 2), empty=True)]
    without = frame_batch(batch, include_usage=False)
    events = [json.loads(e[len(b"data: ") :]) for e in without.split(b"\n\n")[:-1]]
    assert len(events) == 1 and b"data: x" not in without
    assert events[0]["object"] == "chat.completion.chunk" and "usage" not in events[0]
    assert events[0]["choices"][0]["delta"] == {"content": "hi data: x"}
    with_usage = frame_batch(batch, include_usage=True)
    events = [json.loads(e[len(b"data: ") :]) for e in with_usage.split(b"\n\n")[:-1]]
    assert events[1]["choices"] == [] and events[1]["usage"]["total_tokens"] == 2


def test_stream_error_event_is_one_data_line() -> None:
    event = stream_error_event(UpstreamUnavailable("gone data: now", provider="up0"), Redactor())
    assert event.startswith(b'data: {"error":') and event.endswith(b"}\n\n")
    assert event.count(b"\n") == 2 and event.count(b"data: ") == 1
    err = json.loads(event[len(b"data: ") :])["error"]
    assert err["message"] == "up0: gone data: now" and err["code"] == "upstream_unavailable"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"max_tokens": 16}),
        ({"max_tokens": 4}, {"max_tokens": 4}),
        ({"max_tokens": 400}, {"max_tokens": 16}),
        ({"max_completion_tokens": 400}, {"max_completion_tokens": 16}),
        ({"max_completion_tokens": 8, "max_tokens": 99}, {"max_completion_tokens": 8,
                                                         "max_tokens": 16}),
    ],
)  # fmt: skip
def test_cap_tokens(given: dict[str, Any], expected: dict[str, Any]) -> None:
    cap_tokens(given, 16)
    assert given == expected


# -- validation -------------------------------------------------------------------------

GOOD: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def test_validate_returns_what_the_gateway_acts_on() -> None:
    assert validate(dict(GOOD), max_messages=10) == ("m", False, False)
    body = {**GOOD, "stream": True, "stream_options": {"include_usage": True}, "x": object()}
    assert validate(body, max_messages=10) == ("m", True, True)
    parts = {**GOOD, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert validate(parts, max_messages=10)[0] == "m"
    assert validate({**GOOD, "stop": None, "temperature": 0, "top_p": 1}, max_messages=1)


def test_validate_counts_messages() -> None:
    with pytest.raises(GatewayError) as info:
        validate({**GOOD, "messages": GOOD["messages"] * 3}, max_messages=2)
    assert info.value.status == 400 and info.value.code == "too_many_messages"


def test_openapi_required_fields_are_what_validate_requires() -> None:
    doc = openapi_document(version="0", max_messages=7)
    schema = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert schema["properties"]["messages"]["maxItems"] == 7
    for field in schema["required"]:
        with pytest.raises(GatewayError) as info:
            validate({k: v for k, v in GOOD.items() if k != field}, max_messages=7)
        assert info.value.param == field
    assert set(schema["required"]) == set(GOOD)


# -- error mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BadRequest("bad", status=422, provider="u"), 422, None),
        (BadRequest("bad", provider="u"), 400, None),
        (NotFound("no model", status=404, provider="u"), 404, "model_not_found"),
        (RateLimited("slow down", status=429, provider="u", retry_after=2.2), 429, "rate_limited"),
        (UpstreamUnavailable("down", status=503, provider="u"), 502, "upstream_unavailable"),
        (Timeout("late", kind="idle", provider="u"), 504, "timeout_idle"),
        (ProtocolError("garbled", provider="u"), 502, "upstream_protocol_error"),
        (AuthFailed("Incorrect API key sk-abc", status=401, provider="u"), 502,
         "upstream_auth_failed"),
        (ConfigError("no weights"), 503, "backend_unavailable"),
    ],
)  # fmt: skip
def test_error_mapping(exc: Any, status: int, code: str | None) -> None:
    err = from_ails_error(exc, Redactor())
    assert (err.status, err.code) == (status, code)
    if status == 429:
        assert err.headers == {"retry-after": "3"}
    if code == "upstream_auth_failed":
        assert "sk-abc" not in err.message  # the upstream's words may quote our key


def test_redactor_removes_secrets() -> None:
    redact = Redactor(["sekrit-key", "user:pw-123", "pw-123", "ab"])
    assert redact("no sekrit-key at http://user:pw-123@h/") == "no *** at http://***@h/"
    assert redact("ab stays: too short to be a secret") == "ab stays: too short to be a secret"


# -- configuration ----------------------------------------------------------------------


def test_config_file_env_and_command_line(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("k-file\n")
    (tmp_path / "c.toml").write_text(
        """
port = 9001
allow_signed = true
signed_quota = "15/day"
api_keys = ["file-key"]
[aliases]
"gpt-3.5-turbo" = "local/default"
[[upstreams]]
url = "http://127.0.0.1:1/v1"
key = "in-file"
name = "vllm"
[[upstreams]]
url = "http://127.0.0.1:2/v1"
"""
    )
    cfg = build_config(file=str(tmp_path / "c.toml"), environ={"AILS_UPSTREAM_KEY": "env-key"})
    assert cfg.port == 9001 and cfg.allow_signed and cfg.signed_quota == Quota(15, 86400)
    assert [(u.name, u.key) for u in cfg.upstreams] == [
        ("vllm", "in-file"),
        ("upstream1", "env-key"),
    ]
    assert cfg.api_keys == ["file-key"] and cfg.aliases == {"gpt-3.5-turbo": "local/default"}
    assert cfg.backend_names() == []
    cfg = build_config(
        file=str(tmp_path / "c.toml"),
        cli={"port": 9002, "api_key_file": str(tmp_path / "keys"), "upstream_key": ["one"],
             "alias": ["a=b"], "local": True},
        environ={"AILS_API_KEYS": "e1,e2"},
    )  # fmt: skip
    assert cfg.port == 9002 and cfg.api_keys == ["k-file"] and cfg.aliases == {"a": "b"}
    assert [u.key for u in cfg.upstreams] == ["one", "one"] and cfg.backend_names() == ["local"]
    cfg = build_config(environ={"AILS_API_KEYS": "e1, e2"})
    assert cfg.api_keys == ["e1", "e2"] and cfg.backend_names() == ["local"] and not cfg.upstreams
    assert "e1" not in repr(cfg)


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"host": "0.0.0.0"}, "refusing to serve"),
        ({"upstream": ["ftp://x"]}, "http(s) base URL"),
        ({"upstream": ["http://a/v1", "http://b/v1"], "upstream_key": ["1", "2", "3"]},
         "3 upstream keys for 2 upstreams"),
        ({"alias": ["nope"]}, "NAME=MODEL"),
        ({"signed_quota": "lots"}, "COUNT/PERIOD"),
        ({"trusted_proxy": ["not-an-ip"]}, "trusted proxy"),
        ({"max_messages": 0}, "max_messages"),
    ],
)  # fmt: skip
def test_config_refuses_what_cannot_work(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(cli=cli, environ={})
    assert message in str(info.value)


def test_config_file_typos_are_errors(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("prot = 8000\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config(file=str(tmp_path / "c.toml"), environ={})
    (tmp_path / "c.toml").write_text('port = "8000"\n')
    with pytest.raises(ConfigError, match="port must be an integer"):
        build_config(file=str(tmp_path / "c.toml"), environ={})


def test_public_bind_is_allowed_with_a_key_or_explicitly() -> None:
    long_key = "k" * 16
    cfg = build_config(cli={"host": "0.0.0.0", "api_key": [long_key]}, environ={})
    assert cfg.api_keys == [long_key]
    assert build_config(cli={"host": "0.0.0.0", "insecure_public": True}, environ={})
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    assert parse_alias(" a = local/default ") == ("a", "local/default")


# -- the options' one declaration --------------------------------------------------------


def test_every_option_is_a_flag_a_file_key_and_an_environment_variable(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ails.cli.serve import serve_cmd
    from ails.server.option_spec import env_of, file_key_of, flag_of
    from ails.server.options import declared

    shown = CliRunner().invoke(serve_cmd, ["--help"], terminal_width=200).output
    for name, opt in declared():
        assert f"--{flag_of(name, opt)}" in shown, name
        if not opt.multiple:
            assert env_of(name, opt).startswith(("AILS_SERVE_", "AILS_REDIS_URL")), name
            assert file_key_of(name, opt) == name
    cfg = build_config(
        environ={
            "AILS_SERVE_PORT": "9005",
            "AILS_SERVE_ACCESS_LOG": "no",
            "AILS_SERVE_TIMEOUT": "0",
            "AILS_SERVE_REDIS_FAILURE": "open",
        }
    )
    assert (cfg.port, cfg.access_log, cfg.timeout, cfg.redis_failure) == (9005, False, None, "open")
    (tmp_path / "c.toml").write_text("port = 9006\naccess_log = true\n")
    # The environment beats the file, the command line beats both.
    cfg = build_config(file=str(tmp_path / "c.toml"), environ={"AILS_SERVE_PORT": "9007"})
    assert (cfg.port, cfg.access_log) == (9007, True)
    cfg = build_config(
        file=str(tmp_path / "c.toml"), cli={"port": 9008}, environ={"AILS_SERVE_PORT": "9007"}
    )
    assert cfg.port == 9008
    with pytest.raises(ConfigError, match="AILS_SERVE_PORT must be a whole number"):
        build_config(environ={"AILS_SERVE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="redis_failure is 'closed' or 'open'"):
        build_config(environ={"AILS_SERVE_REDIS_FAILURE": "maybe"})


@pytest.mark.parametrize(
    ("prompt", "ok"),
    [
        ("text", True),
        (["one", "two"], True),
        ([1, 2.0, 3], True),  # JSON Schema's integers: 2.0 is 2
        ([[1, 2], [3]], True),
        ([], False),
        ([[]], False),
        ([-1], False),
        (["a", 1], False),
        ({"a": 1}, False),
    ],
)
def test_validate_completions_takes_openais_four_prompt_forms(prompt: Any, ok: bool) -> None:
    body = {"model": "m", "prompt": prompt}
    if ok:
        assert validate_completions(body) == ("m", False, False)
        assert "2.0" not in json.dumps(body["prompt"])
    else:
        with pytest.raises(GatewayError) as info:
            validate_completions(body)
        assert info.value.status == 400 and info.value.param == "prompt"


# -- typed application keys ------------------------------------------------------------------


def test_a_string_key_on_an_application_fails_the_tests() -> None:
    """pyproject's ``filterwarnings`` makes aiohttp's warning an error, so a
    shared object stored under a string key cannot come back unnoticed."""
    from aiohttp import web

    with pytest.raises(web.NotAppKeyWarning):
        web.Application()["gateway"] = object()


def test_a_string_key_on_a_request_fails_the_tests() -> None:
    """The same for a request's own storage (the request id, the caller, the
    record are web.RequestKeys)."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/v1/models")
    with pytest.raises(web.NotAppKeyWarning):
        request["rid"] = "r-1"


def test_the_gateway_app_keeps_its_shared_objects_under_typed_keys() -> None:
    from aiohttp import web

    from ails.server.app import GATEWAY, build_app
    from ails.server.build import create_gateway

    config = build_config(
        cli={"upstream": ["http://127.0.0.1:9/v1"], "metrics_key": "metrics-key-0123456789"},
        environ={},
    )
    gateway = create_gateway(config, environ={})
    app = build_app(gateway, ui=True)  # every route and hook: none stores a string key
    assert app[GATEWAY] is gateway
    assert all(isinstance(key, web.AppKey) for key in app)


async def test_what_no_route_serves_gets_the_gateway_s_json_and_is_counted_as_other() -> None:
    """The gateway has no aiohttp middleware: its handlers are wrapped as their
    routes are added, and a catch-all route (server/middleware.py) answers what
    no route serves with the same wrapper: ``OPTIONS *`` too, a target no path
    pattern matches, and a 405 keeps aiohttp's ``Allow``."""
    import asyncio

    from aiohttp import web

    from ails.server.app import build_app
    from ails.server.build import create_gateway

    config = build_config(cli={"upstream": ["http://127.0.0.1:9/v1"]}, environ={})
    gateway = create_gateway(config, environ={})
    runner = web.AppRunner(build_app(gateway), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def send(line: str) -> tuple[str, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{line}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = (await reader.read()).decode()
        writer.close()
        head, _, body = data.partition("\r\n\r\n")
        return head, body

    try:
        head, body = await send("OPTIONS * HTTP/1.1")
        assert head.startswith("HTTP/1.1 404") and "x-request-id: " in head
        assert json.loads(body)["error"]["code"] == "unknown_url"
        head, body = await send("DELETE /health HTTP/1.1")
        assert head.startswith("HTTP/1.1 405") and "Allow: GET,HEAD" in head
        assert json.loads(body)["error"]["code"] == "method_not_allowed"
    finally:
        await runner.cleanup()
    assert gateway.metrics is not None
    assert {endpoint for endpoint, _ in gateway.metrics.series} == {"other"}
