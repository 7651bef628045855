"""Security checks of the gateway: who gets in, what leaks, what a web page or a
crafted request can make it do.

* API keys are compared in constant time over fixed-length digests;
* no key and no signature in the log or in any error body;
* replayed, stale, future-dated and malformed signed bodies are refused;
* the signed quota counts the socket's peer, whatever headers say, and only a
  trusted proxy's last ``X-Forwarded-For`` hop replaces it;
* a body or header over the limits is refused (tests/test_hostile.py has more);
* no request makes the gateway call any URL but its configured upstreams;
* a browser page cannot drive it: Host allow-list, JSON only, no CORS unless
  configured;
* it refuses to listen beyond loopback without a key unless told;
* the embedded runtime's listener is reachable by no one (``-m local``).
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ails.errors import ConfigError, SignatureError
from ails.server.auth import Authenticator
from ails.server.config import build_config
from ails.server.security import SecurityPolicy, check_cors_origin
from ails.server.state import MemoryStore
from ails.signing import format_timestamp, sign, verify
from gateway_proc import Gateway, run_serve
from upstream import Upstream

HELLO = [{"role": "user", "content": "Hello, who are you?"}]
CLIENT_KEY = "sk-client-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-fedcba9876543210"


# -- helpers -----------------------------------------------------------------------------


def request(
    g: Gateway,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange; ``headers`` may replace Host. A JSON body is encoded."""
    port = int(g.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=all_headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error_of(body: bytes) -> dict[str, Any]:
    obj = json.loads(body)
    assert set(obj) == {"error"}
    assert set(obj["error"]) == {"message", "type", "code", "param"}
    return obj["error"]  # type: ignore[no-any-return]


def signed_body(content: str, *, now_ms: int | None = None) -> dict[str, Any]:
    t = format_timestamp(now_ms if now_ms is not None else int(time.time() * 1000))
    return {
        "model": "test-model",
        "messages": [{"role": "user", "content": content}],
        "d": time.strftime("%Y-%m-%d", time.gmtime(int(t) / 1000)),
        "t": t,
        "s": sign(t, content),
    }


def host_of(g: Gateway) -> str:
    return g.url.removeprefix("http://")


# -- constant-time key comparison -------------------------------------------------------------


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared, as a 32-byte digest, with
    hmac.compare_digest, whatever key is presented and whether it matches: the
    time depends neither on the key's length nor on which key (if any) matches."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    # auth.py calls hmac.compare_digest through the module: the spy sees each call.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = Authenticator(api_keys=["first-key", "second-key", "third-key"], store=MemoryStore())
    for presented, valid in [
        ("Bearer first-key", True),
        ("Bearer third-key", True),
        ("Bearer first-kez", False),
        ("Bearer " + "x" * 5000, False),
        ("Bearer f", False),
    ]:
        calls.clear()
        assert auth.key_valid(presented) is valid
        assert len(calls) == 3, "no early exit: every key is compared"
        assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = signed_body("hi")
    verify(body, now_ms=int(body["t"]))
    body["s"] = "0" * 64
    with pytest.raises(SignatureError):
        verify(body, now_ms=int(body["t"]))
    assert len(calls) == 2 and all(len(a) == len(b) == 64 for a, b in calls)


# -- keys and signatures never shown ---------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_up() -> Iterator[Upstream]:
    with Upstream(api_key=UPSTREAM_KEY, models=["test-model"]) as u:
        yield u


@pytest.fixture(scope="module")
def signed_gw(keyed_up: Upstream) -> Iterator[Gateway]:
    """Keys, the signed protocol with a quota, debug logging: as much log as there is."""
    args = [
        "--upstream", keyed_up.base_url,
        "--upstream-key", UPSTREAM_KEY,
        "--api-key", CLIENT_KEY,
        "--allow-signed",
        "--signed-quota", "100/day",
        "--max-retries", "0",
        "--log-level", "debug",
    ]  # fmt: skip
    with Gateway(args) as g:
        yield g


def test_signed_bodies_refused_for_each_reason(signed_gw: Gateway) -> None:
    now = int(time.time() * 1000)
    fresh = signed_body("replay me")
    assert request(signed_gw, "POST", "/v1/chat/completions", fresh)[0] == 200
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("replayed", fresh, 401, "signature_replayed"),
        ("stale", signed_body("old", now_ms=now - 600_000), 401, "signature_stale"),
        ("future", signed_body("later", now_ms=now + 600_000), 401, "signature_stale"),
        ("wrong s", {**signed_body("x"), "s": "a" * 64}, 401, "signature_invalid"),
        ("t even", {**signed_body("x"), "t": "1700000000000"}, 400, "signature_malformed"),
        ("t a number", {**signed_body("x"), "t": 1700000000001}, 400, "signature_malformed"),
        ("s upper case", {**(b := signed_body("x")), "s": b["s"].upper()}, 400,
         "signature_malformed"),
        ("d not a date", {**signed_body("x"), "d": "2023-02-30"}, 400, "signature_malformed"),
        ("s missing", {k: v for k, v in signed_body("x").items() if k != "s"}, 400,
         "signature_malformed"),
        ("content a list", {**signed_body("x"), "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"}]}]}, 400, "signature_malformed"),
    ]  # fmt: skip
    for name, body, status, code in cases:
        got, _, raw = request(
            signed_gw, "POST", "/v1/chat/completions", body, {"Authorization": "Bearer free"}
        )
        assert (got, error_of(raw)["code"]) == (status, code), name


def test_no_key_or_signature_in_the_log_or_any_error(
    signed_gw: Gateway, keyed_up: Upstream
) -> None:
    shown: list[bytes] = []  # every body the gateway answered
    signatures: list[str] = []

    def call(body: Any, **headers: str) -> int:
        status, _, raw = request(signed_gw, "POST", "/v1/chat/completions", body, headers)
        shown.append(raw)
        return status

    ok = {"model": "test-model", "messages": HELLO}
    assert call(ok, Authorization=f"Bearer {CLIENT_KEY}") == 200
    assert call(ok, Authorization=f"Bearer {CLIENT_KEY}x") == 401  # a near miss
    assert call(ok) == 401
    for i in range(3):
        body = signed_body(f"question {i}")
        signatures.append(body["s"])
        assert call(body, Authorization="Bearer free") == 200
        assert call(body, Authorization="Bearer free") == 401  # the replay
        wrong = {**body, "s": body["s"][::-1]}
        signatures.append(wrong["s"])
        assert call(wrong, Authorization="Bearer free") == 401
    # A header over the line limit, holding the key: refused by the HTTP layer,
    # whose log line would otherwise quote it.
    long_auth = {"Authorization": f"Bearer {CLIENT_KEY}" + "k" * 9000}
    assert call(ok, **long_auth) == 400
    # The same with a key the gateway does not know, so no redactor knows it either.
    stranger = "sk-someone-else-13579bdf"
    assert call(ok, Authorization=f"Bearer {stranger}" + "k" * 9000) == 400
    _, _, models = request(
        signed_gw, "GET", "/v1/models", None, {"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    shown.append(models)
    assert signed_gw.wait_for_log("GET /v1/models 200")
    log = signed_gw.log
    answers = b"\n".join(shown).decode("utf-8", "replace")
    for secret in [CLIENT_KEY, UPSTREAM_KEY, stranger, *signatures]:
        assert secret not in log, f"{secret[:8]}... in the log"
        assert secret[:12] not in log
    for secret in [UPSTREAM_KEY, *signatures]:
        assert secret not in answers
    # The only answers that quote a client's key are the HTTP layer's 400s to
    # that same client about its own oversized header; no other answer does.
    assert sum(CLIENT_KEY in a.decode("utf-8", "replace") for a in shown) <= 1
    assert sum(stranger in a.decode("utf-8", "replace") for a in shown) <= 1
    assert keyed_up.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


# -- the quota counts the socket's peer ------------------------------------------------------

SPOOFS: list[dict[str, str]] = [
    {"X-Forwarded-For": "203.0.113.1"},
    {"X-Real-IP": "203.0.113.2", "client-id": "11111111-1111-4111-8111-111111111111"},
    {"Forwarded": "for=203.0.113.3", "True-Client-IP": "203.0.113.4"},
    {"CF-Connecting-IP": "203.0.113.5", "client-id": "22222222-2222-4222-8222-222222222222"},
    {"X-Forwarded-For": "203.0.113.6, 203.0.113.7", "X-Client-IP": "203.0.113.8"},
]


def ask_signed(g: Gateway, headers: dict[str, str]) -> tuple[int, str | None]:
    body = signed_body(f"q {time.time_ns()}")
    status, _, raw = request(
        g, "POST", "/v1/chat/completions", body, {"Authorization": "Bearer free", **headers}
    )
    return status, (error_of(raw)["code"] if status != 200 else None)


@pytest.fixture(scope="module")
def open_up() -> Iterator[Upstream]:
    with Upstream(models=["test-model"]) as u:
        yield u


def test_quota_cannot_be_bypassed_with_headers(open_up: Upstream) -> None:
    args = ["--upstream", open_up.base_url, "--allow-signed", "--signed-quota", "3/day"]
    with Gateway(args) as g:
        for spoof in SPOOFS[:3]:
            assert ask_signed(g, spoof) == (200, None)
        for spoof in SPOOFS:
            assert ask_signed(g, spoof) == (429, "quota_exceeded"), spoof


def test_a_trusted_proxy_gives_the_last_hop(open_up: Upstream) -> None:
    args = ["--upstream", open_up.base_url, "--allow-signed", "--signed-quota", "2/day"]
    with Gateway([*args, "--trusted-proxy", "127.0.0.1"]) as g:
        # The proxy appended 198.51.100.7; what the client wrote before it is not believed.
        for first in ("10.0.0.1", "10.0.0.2"):
            assert ask_signed(g, {"X-Forwarded-For": f"{first}, 198.51.100.7"})[0] == 200
        assert ask_signed(g, {"X-Forwarded-For": "10.0.0.3, 198.51.100.7"})[0] == 429
        # Other headers do not count, even from the trusted proxy.
        spoofed = {"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "192.0.2.1"}
        assert ask_signed(g, {**spoofed, "Forwarded": "for=192.0.2.2"})[0] == 429
        # Another last hop is another client.
        assert ask_signed(g, {"X-Forwarded-For": "198.51.100.7, 198.51.100.8"})[0] == 200
        # A last hop that is not an address falls back to the peer (127.0.0.1).
        assert ask_signed(g, {"X-Forwarded-For": "198.51.100.9, unknown"})[0] == 200
        assert ask_signed(g, {"X-Forwarded-For": "not an address"})[0] == 200
        assert ask_signed(g, {})[0] == 429  # 127.0.0.1 has used its two


# -- no SSRF -------------------------------------------------------------------------------------


def test_no_request_makes_the_gateway_call_another_url(open_up: Upstream) -> None:
    with (
        Upstream(models=["test-model"]) as elsewhere,
        Gateway(["--upstream", open_up.base_url]) as g,
    ):
        target = elsewhere.base_url
        open_up.reset()
        fields = {
            "base_url": target, "api_base": target, "url": target, "endpoint": target,
            "upstream": target, "api_url": target, "host": target,
            "provider": {"base_url": target}, "extra_body": {"base_url": target},
        }  # fmt: skip
        status, _, _ = request(
            g, "POST", "/v1/chat/completions", {"model": "test-model", "messages": HELLO, **fields}
        )
        assert status == 200
        for model in [
            target, f"openai/{target}", f"{target}/chat/completions", "openai/test-model",
            "signed/gpt-3.5-turbo", "local/default", "upstream9/test-model", "../test-model",
        ]:  # fmt: skip
            status, _, raw = request(
                g, "POST", "/v1/chat/completions", {"model": model, "messages": HELLO}
            )
            assert status == 404 and error_of(raw)["code"] == "model_not_found", model
        for headers in [
            {"X-Upstream": target}, {"X-Forwarded-Host": target.split("/")[2]},
            {"Host": target.split("/")[2]}, {"X-Original-URL": target},
        ]:  # fmt: skip
            status, _, _ = request(
                g,
                "POST",
                "/v1/chat/completions",
                {"model": "test-model", "messages": HELLO},
                headers,
            )
            assert status == 200
        assert elsewhere.requests == []
        # The configured upstream got the unknown fields as fields, passed on untouched.
        assert open_up.requests[0].body["base_url"] == target


# -- a browser page cannot drive the gateway ----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("127.0.0.1", True),
        ("localhost:8000", True),
        ("LocalHost.", True),
        ("[::1]:8000", True),
        ("192.168.1.20:8000", True),  # an IP literal cannot be rebound
        (None, True),  # HTTP/1.0 without Host: not a browser
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io:8000", False),
        ("gateway.lan:8000", False),
        ("", False),
    ],
)
def test_host_allow_list(host: str | None, allowed: bool) -> None:
    assert SecurityPolicy.build().host_allowed(host) is allowed
    assert SecurityPolicy.build(allowed_hosts=["*"]).host_allowed(host)


def test_host_allow_list_takes_names_and_the_bind_name() -> None:
    policy = SecurityPolicy.build(bind_host="gateway.lan", allowed_hosts=["API.Example.com"])
    assert policy.host_allowed("gateway.lan:8000") and policy.host_allowed("api.example.com")
    assert not policy.host_allowed("example.com")
    with pytest.raises(ConfigError):
        SecurityPolicy.build(allowed_hosts=["http://x.example/"])


def test_cors_origins_are_checked() -> None:
    assert check_cors_origin("https://App.Example.com/") == "https://app.example.com"
    assert check_cors_origin("http://localhost:3000") == "http://localhost:3000"
    assert check_cors_origin("*") == "*"
    for bad in ["app.example.com", "ftp://x", "https://x/path", "https://u@x", "https://x?q"]:
        with pytest.raises(ConfigError):
            check_cors_origin(bad)
    with pytest.raises(ConfigError, match="CORS origin"):
        build_config(cli={"upstream": ["http://127.0.0.1:9/v1"], "cors_origin": ["x"]}, environ={})


@pytest.fixture(scope="module")
def browser_gw(open_up: Upstream) -> Iterator[Gateway]:
    with Gateway(["--upstream", open_up.base_url, "--api-key", CLIENT_KEY]) as g:
        yield g


def test_dns_rebinding_gets_421_everywhere(browser_gw: Gateway) -> None:
    port = host_of(browser_gw).rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Authorization": f"Bearer {CLIENT_KEY}"}
    for method, path in [("GET", "/"), ("GET", "/health"), ("GET", "/v1/models"),
                         ("GET", "/openapi.json"), ("POST", "/v1/chat/completions")]:  # fmt: skip
        body = {"model": "test-model", "messages": HELLO} if method == "POST" else None
        status, _, raw = request(browser_gw, method, path, body, rebound)
        assert status == 421 and error_of(raw)["code"] == "host_not_allowed", path
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert request(browser_gw, "GET", "/health", None, {"Host": host})[0] == 200


def test_the_requests_a_page_sends_without_a_preflight_are_refused(browser_gw: Gateway) -> None:
    key = {"Authorization": f"Bearer {CLIENT_KEY}"}
    ok = {"model": "test-model", "messages": HELLO}
    # The chat page itself, from the gateway's own origin, is served.
    own = {"Origin": f"http://{host_of(browser_gw)}", **key}
    assert request(browser_gw, "POST", "/v1/chat/completions", ok, own)[0] == 200
    # What a page elsewhere may send without a preflight: forms, text, no type.
    data = json.dumps(ok).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        headers = {**key, "Content-Type": ctype} if ctype else key
        port = int(browser_gw.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.putrequest("POST", "/v1/chat/completions")
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            resp = conn.getresponse()
            assert resp.status == 415, ctype
            assert error_of(resp.read())["code"] == "unsupported_media_type"
        finally:
            conn.close()


def test_no_cors_unless_configured(browser_gw: Gateway) -> None:
    preflight = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, headers, _ = request(browser_gw, "OPTIONS", "/v1/chat/completions", None, preflight)
    assert status == 403
    assert not any(h.startswith("access-control-") for h in headers)
    for path in ("/health", "/v1/models", "/openapi.json", "/"):
        _, headers, _ = request(
            browser_gw, "GET", path, None, {"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        assert not any(h.startswith("access-control-") for h in headers), path


def test_cors_for_configured_origins_only(open_up: Upstream) -> None:
    app = "https://app.example.com"
    args = ["--upstream", open_up.base_url, "--cors-origin", app, "--allowed-host", "gw.example"]
    with Gateway(args) as g:
        preflight = {"Access-Control-Request-Method": "POST", "Host": "gw.example"}
        status, headers, _ = request(
            g, "OPTIONS", "/v1/chat/completions", None, {"Origin": app, **preflight}
        )
        assert status == 204
        assert headers["access-control-allow-origin"] == app
        assert "POST" in headers["access-control-allow-methods"]
        assert "Authorization" in headers["access-control-allow-headers"]
        assert headers["vary"] == "Origin"
        status, headers, _ = request(
            g,
            "OPTIONS",
            "/v1/chat/completions",
            None,
            {"Origin": "https://evil.example", **preflight},
        )
        assert status == 403 and "access-control-allow-origin" not in headers
        for stream in (False, True):
            body = {"model": "test-model", "messages": HELLO, "stream": stream}
            status, headers, raw = request(g, "POST", "/v1/chat/completions", body, {"Origin": app})
            assert status == 200 and headers["access-control-allow-origin"] == app
            assert "x-request-id" in headers["access-control-expose-headers"]
            assert raw.endswith(b"data: [DONE]\n\n") if stream else json.loads(raw)["choices"]


# -- listening beyond loopback ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_no_public_bind_without_a_key(host: str) -> None:
    upstream = {"upstream": ["http://127.0.0.1:9/v1"], "host": host}
    with pytest.raises(ConfigError, match="refusing to serve"):
        build_config(cli=upstream, environ={})
    assert build_config(cli={**upstream, "api_key": ["k" * 16]}, environ={}).host == host
    assert build_config(cli={**upstream, "insecure_public": True}, environ={}).host == host
    assert build_config(cli={**upstream, "host": "127.0.0.2"}, environ={})


def test_the_command_refuses_a_public_bind_without_a_key() -> None:
    # Refused before binding anything: nothing listens beyond loopback in this test.
    done = run_serve(["--host", "0.0.0.0", "--upstream", "http://127.0.0.1:9/v1"])
    assert done.returncode == 2 and "--insecure-public" in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--api-key", ""], {}, "--api-key"),
        (["--api-key", "short-key"], {}, "--api-key"),
        (["--api-key", "a key with spaces in it"], {}, "--api-key"),
        ([], {"AILS_API_KEYS": "long-enough-key-123,,"}, "AILS_API_KEYS (entry 2)"),
        (["--api-key", "long-enough-key-123", "--api-key", "\u00e9" * 20], {}, "--api-key"),
    ],
)
def test_a_key_that_cannot_work_stops_a_public_start(
    args: list[str], env: dict[str, str], source: str
) -> None:
    # `--api-key "$KEY"` with KEY unset used to start with authentication off.
    done = run_serve(["--host", "0.0.0.0", "--upstream", "http://127.0.0.1:9/v1", *args], env=env)
    assert done.returncode == 2, done.stderr
    assert f"the key from {source}" in done.stderr and "Traceback" not in done.stderr


def test_keys_are_checked_wherever_they_come_from(tmp_path: Path) -> None:
    up = {"upstream": ["http://127.0.0.1:9/v1"]}
    (tmp_path / "keys").write_text("good-key\nbad key\n")
    (tmp_path / "c.toml").write_text('api_keys = [""]\n')
    (tmp_path / "named.toml").write_text('[keys.team]\nkey = "tab\\tkey"\n')
    (tmp_path / "up.toml").write_text('[[upstreams]]\nurl = "http://127.0.0.1:9/v1"\nkey = ""\n')
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({**up, "api_key_file": str(tmp_path / "keys")}, None, "--api-key-file"),
        (up, str(tmp_path / "c.toml"), "config api_keys"),
        (up, str(tmp_path / "named.toml"), "config [keys.team]"),
        ({}, str(tmp_path / "up.toml"), "config upstream #1"),
        ({**up, "upstream_key": [""]}, None, "--upstream-key"),
    ]
    for cli, file, source in cases:
        with pytest.raises(ConfigError, match=re.escape(f"the key from {source}")):
            build_config(cli=cli, file=file, environ={})
    # On loopback a short key is fine; beyond it, 16 characters are needed.
    assert build_config(cli={**up, "api_key": ["short"]}, environ={}).api_keys == ["short"]
    public = {**up, "host": "0.0.0.0"}
    with pytest.raises(ConfigError, match="at least 16"):
        build_config(cli={**public, "api_key": ["short"]}, environ={})
    with pytest.raises(ConfigError, match="at least 16"):
        build_config(cli=public, environ={"AILS_API_KEYS": "short"})
    assert build_config(cli={**public, "api_key": ["x" * 16]}, environ={}).api_keys == ["x" * 16]
    # An unset or blank AILS_API_KEYS is no key at all, which the bind guard refuses.
    with pytest.raises(ConfigError, match="refusing to serve"):
        build_config(cli=public, environ={"AILS_API_KEYS": " "})


# -- the embedded runtime's listener ---------------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[len("socket:[") : -1])
    return out


def _tcp_listeners(pid: int, inodes: set[str]) -> list[int]:
    ports = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _unix_listeners(pid: int, inodes: set[str]) -> list[str]:
    paths = []
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Flags 00010000: accepting connections (a listening socket).
        if fields[6] in inodes and int(fields[3], 16) & 0x10000:
            paths.append(fields[7] if len(fields) > 7 else "")
    return paths


@pytest.mark.local
def test_the_embedded_runtime_listens_nowhere_reachable() -> None:
    with Gateway(["--local", "--no-ui"], start_timeout=120) as g:
        assert g.proc is not None
        pid = g.proc.pid
        inodes = _socket_inodes(pid)
        port = int(g.url.rsplit(":", 1)[1])
        # One TCP listener: the gateway's own. The runtime opened none.
        assert _tcp_listeners(pid, inodes) == [port]
        # The runtime's listener is a UNIX socket whose path is gone: no one can
        # connect to it (and it wants a random key besides).
        unix = _unix_listeners(pid, inodes)
        assert unix, "the runtime's UNIX listener was not found"
        for path in unix:
            assert path and not os.path.exists(path), path
