"""Issue 14's open doors, each tried against a real ``ails serve`` (the rows of
tests/door_matrix.py; connections are in tests/test_connections.py, Redis in
tests/test_redis_deadlines.py).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ails.signing import signature_fields
from door_matrix import door
from gateway_proc import Gateway, StatusUpstream, run_serve
from redis_proc import free_port
from upstream import Upstream

CLIENT_KEY = "sk-client-0123456789abcdef"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=["test-model"]) as u:
        yield u


def port_of(g: Gateway) -> int:
    return int(g.url.rsplit(":", 1)[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def head(length: int | None, *, key: str | None = None, chunked: bool = False) -> bytes:
    lines = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
    ]
    if key is not None:
        lines.append(b"Authorization: Bearer " + key.encode())
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_answer(sock: socket.socket, timeout: float = 5.0) -> tuple[int, str | None]:
    """The status and error code of one answer (read up to its Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in top.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = int(top.split(b" ", 2)[1])
    if status < 400:
        return status, None
    return status, json.loads(body)["error"]["code"]


def expected(key: str) -> tuple[int | None, str | None]:
    row = door(key)
    return row.status, row.code


# -- item 3: the key before the body ------------------------------------------------------


def test_a_request_without_a_key_is_refused_before_its_body(up: Upstream) -> None:
    args = ["--upstream", up.base_url, "--api-key", CLIENT_KEY]
    with Gateway(args) as g:
        assert g.proc is not None
        time.sleep(0.5)
        before = rss_kib(g.proc.pid)
        socks = []
        try:
            for _ in range(40):
                s = socket.create_connection(("127.0.0.1", port_of(g)), timeout=5)
                socks.append(s)
                s.sendall(head(4 * 1024 * 1024) + b"x" * 1024)  # 4 MiB announced, 1 KiB sent
            for s in socks:
                assert read_answer(s) == expected("unread-body")
            time.sleep(0.3)
            grown_mib = (rss_kib(g.proc.pid) - before) / 1024
        finally:
            for s in socks:
                s.close()
        assert grown_mib < 16, f"{grown_mib:.1f} MiB more after 40 unread bodies"


@pytest.fixture(scope="module")
def signed_gw(up: Upstream) -> Iterator[Gateway]:
    args = ["--upstream", up.base_url, "--api-key", CLIENT_KEY, "--allow-signed"]
    with Gateway(args) as g:
        yield g


def test_an_anonymous_body_is_limited_before_it_is_read(signed_gw: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", port_of(signed_gw)), timeout=5) as s:
        s.sendall(head(4 * 1024 * 1024))  # nothing of the body
        assert read_answer(s) == expected("anonymous-large")
    # With a key, the same size is only over --max-body-bytes by a byte: 413 too,
    # but a body under it is read in full.
    with socket.create_connection(("127.0.0.1", port_of(signed_gw)), timeout=5) as s:
        body = json.dumps({"model": "test-model", "messages": HELLO, "pad": "x" * 300_000})
        s.sendall(head(len(body), key=CLIENT_KEY) + body.encode())
        assert read_answer(s) == (200, None)


def test_an_anonymous_chunked_body_stops_at_the_limit(signed_gw: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", port_of(signed_gw)), timeout=5) as s:
        s.sendall(head(None, chunked=True))
        piece = b"x" * 65536
        sent = 0
        try:
            while sent < 1024 * 1024:
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except OSError:
            pass  # the gateway answered and closed: fine
        assert read_answer(s) == expected("anonymous-chunked")


# -- item 4: credentials in every encoding ------------------------------------------------

UPSTREAM_USER = "gw-user"
UPSTREAM_PASSWORD = "s3cret-pass-4711"


class EchoAuthUpstream:
    """An upstream that quotes what it was sent, ``Authorization`` included: a
    400 and a 500 whose messages hold it, and a stream whose in-band error holds it."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> EchoAuthUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model"} for m in ("echo-400", "echo-500", "echo-stream")]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        said = f"you sent {request.headers.get('Authorization')} to {request.url}"
        error = {"error": {"message": said, "type": "x", "code": "echo"}}
        if body["model"] == "echo-400":
            return web.json_response(error, status=400)
        if body["model"] == "echo-500":
            return web.json_response(error, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        }
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: " + json.dumps(error).encode() + b"\n\n")
        await resp.write_eof()
        return resp


def test_url_credentials_leak_in_no_encoding() -> None:
    basic = base64.b64encode(f"{UPSTREAM_USER}:{UPSTREAM_PASSWORD}".encode()).decode()
    forms = [UPSTREAM_PASSWORD, f"{UPSTREAM_USER}:{UPSTREAM_PASSWORD}", basic]
    with EchoAuthUpstream() as echo:
        url = f"http://{UPSTREAM_USER}:{UPSTREAM_PASSWORD}@127.0.0.1:{echo.port}/v1"
        with Gateway(["--upstream", url, "--max-retries", "1"]) as g:
            answers = []
            for model in ("echo-400", "echo-500"):
                body = {"model": model, "messages": HELLO}
                status, text = post(g, body)
                assert status in (400, 502), text
                answers.append(text)
            status, text = post(g, {"model": "echo-stream", "messages": HELLO, "stream": True})
            assert status == 200 and '"error"' in text and "[DONE]" in text
            answers.append(text)
            # The upstream did receive the credentials (so the test can fail).
            assert "you sent Basic ***" in answers[0]
            assert g.wait_for_log("retrying")
            log = g.log
    for form in forms:
        for text in [*answers, log]:
            assert form not in text
    assert f"127.0.0.1:{echo.port}" not in log  # nor its address (item 5)


def post(g: Gateway, body: dict[str, object]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(g), timeout=10)
    try:
        conn.request(
            "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("upstream", "says"),
    [
        ("http://u:p4ssw0rd-long@127.0.0.1:9/v1", "credentials in its URL"),
        ("http://127.0.0.1:9/v1?api-version=2024", "query string"),
    ],
)
def test_upstream_urls_that_cannot_work_stop_the_start(upstream: str, says: str) -> None:
    extra = ["--upstream-key", "sk-upstream-0123456789"] if "@" in upstream else []
    done = run_serve(["--upstream", upstream, *extra], timeout=30)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "p4ssw0rd" not in done.stderr and "Traceback" not in done.stderr


# -- item 6: the anonymous quota pays only for served work ---------------------------------


def signed(model: str, text: str, *, stream: bool = False) -> dict[str, object]:
    messages = [{"role": "user", "content": text}]
    body: dict[str, object] = {"model": model, "messages": messages, "stream": stream}
    return body | signature_fields(text, now_ms=int(time.time() * 1000))


def test_the_anonymous_quota_is_charged_only_for_served_requests(up: Upstream) -> None:
    broken = StatusUpstream(["broken"], 503).start()
    try:
        args = [
            "--upstream", up.base_url, "--upstream", broken.base_url,
            "--allow-signed", "--signed-quota", "3/day", "--max-retries", "0",
        ]  # fmt: skip
        with Gateway(args) as g:
            for i in range(3):
                assert post(g, signed("no-such-model", f"a{i}"))[0] == door("quota-404").status
                assert post(g, signed("broken", f"b{i}"))[0] == door("quota-502").status
                status, _ = post(g, signed("broken", f"c{i}", stream=True))
                assert status == door("quota-502").status
            for i in range(3):  # the whole quota is still there
                assert post(g, signed("test-model", f"ok{i}"))[0] == 200
            status, text = post(g, signed("test-model", "one too many"))
            assert (status, json.loads(text)["error"]["code"]) == expected("quota-spent")
    finally:
        broken.stop()


def test_a_keys_rpm_unit_comes_back_when_the_backend_fails(up: Upstream) -> None:
    """A key's requests per minute count work that was served: a backend that
    fails before any output gives the unit back (a 404 never took one)."""
    broken = StatusUpstream(["broken"], 503).start()
    key = "rpm-refund-key-0123456"
    try:
        args = ["--upstream", up.base_url, "--upstream", broken.base_url, "--api-key", key,
                "--rpm", "2", "--max-retries", "0"]  # fmt: skip
        with Gateway(args) as g:

            def call(model: str, *, stream: bool = False) -> int:
                body = {"model": model, "stream": stream,
                        "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
                conn = http.client.HTTPConnection("127.0.0.1", port_of(g), timeout=10)
                try:
                    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
                    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
                    resp = conn.getresponse()
                    resp.read()
                    return resp.status
                finally:
                    conn.close()

            for _ in range(3):
                assert call("broken") == 502
                assert call("broken", stream=True) == 502
                assert call("no-such-model") == 404
            assert [call("test-model") for _ in range(3)] == [200, 200, 429]
    finally:
        broken.stop()


def test_a_request_refused_by_the_quota_leaves_no_replay_entry(up: Upstream) -> None:
    with Gateway(["--upstream", up.base_url, "--allow-signed", "--signed-quota", "1/3s"]) as g:
        # The first request of a fresh window spends it; the next one is refused.
        time.sleep(3 - time.time() % 3)
        assert post(g, signed("test-model", "first"))[0] == 200
        second = signed("test-model", "second")
        assert post(g, second)[0] == 429
        time.sleep(3 - time.time() % 3 + 0.05)  # a new window
        # The very same signed body: not a replay, since its refusal recorded nothing.
        assert post(g, second)[0] == 200


def test_public_anonymous_signing_needs_a_quota() -> None:
    args = ["--host", "0.0.0.0", "--api-key", CLIENT_KEY, "--allow-signed"]
    done = run_serve([*args, "--upstream", "http://127.0.0.1:9/v1"], timeout=30)
    assert done.returncode == expected("public-signed")[0], done.stderr
    assert "--signed-quota" in done.stderr and "Traceback" not in done.stderr


# -- item 8: one Authorization header ------------------------------------------------------


@pytest.mark.parametrize("order", ["valid first", "valid second"])
def test_two_authorization_headers_are_refused(signed_gw: Gateway, order: str) -> None:
    keys = [CLIENT_KEY, "sk-wrong-0123456789abcdef"]
    if order == "valid second":
        keys.reverse()
    body = json.dumps({"model": "test-model", "messages": HELLO}).encode()
    lines = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
    ]
    lines += [b"Authorization: Bearer " + k.encode() for k in keys]
    with socket.create_connection(("127.0.0.1", port_of(signed_gw)), timeout=5) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        assert read_answer(s) == (400, "duplicate_authorization")


# -- item 9: statuses that say what happened -----------------------------------------------


def test_an_upstream_down_at_start_is_503_until_its_list_is_known() -> None:
    port = free_port()
    with Gateway(["--upstream", f"http://127.0.0.1:{port}/v1", "--max-retries", "0"]) as g:
        conn = http.client.HTTPConnection("127.0.0.1", port_of(g), timeout=10)
        body = json.dumps({"model": "test-model", "messages": HELLO})
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        err = json.loads(resp.read())["error"]
        conn.close()
        assert (resp.status, err["code"]) == expected("list-missing")
        assert 1 <= int(resp.headers["retry-after"]) <= 30
        assert "upstream1: it cannot be reached" in err["message"]
        ready = http.client.HTTPConnection("127.0.0.1", port_of(g), timeout=10)
        ready.request("GET", "/ready")
        answer = ready.getresponse()
        assert answer.status == 503 and answer.headers["retry-after"] == "1"
        assert json.loads(answer.read()) == {"status": "not_ready", "waiting_for": ["upstream1"]}
        with Upstream(models=["test-model"], port=port):
            deadline = time.monotonic() + 10
            while (status := post(g, {"model": "test-model", "messages": HELLO})[0]) == 503:
                assert time.monotonic() < deadline, "the model list was not retried"
                time.sleep(0.5)
            assert status == 200
            status, text = post(g, {"model": "no-such-model", "messages": HELLO})
            assert (status, json.loads(text)["error"]["code"]) == (404, "model_not_found")
            ready.request("GET", "/ready")
            answer = ready.getresponse()
            assert answer.status == 200
            assert json.loads(answer.read()) == {"status": "ready", "waiting_for": []}
        ready.close()


def test_a_backend_refusing_the_gateways_key_is_named_as_such() -> None:
    """Its model list failed with 401: the 503 says the key was refused, not
    that the upstream cannot be reached (it was reached), and quotes neither key."""
    with (
        Upstream(models=["test-model"], api_key="the-upstream-wants-this-key") as up,
        Gateway(["--upstream", up.base_url, "--upstream-key", "gateway-sends-a-wrong-key-01"]) as g,
    ):
        status, text = post(g, {"model": "test-model", "messages": HELLO})
        err = json.loads(text)["error"]
        assert (status, err["code"]) == (503, "backend_unavailable")
        assert "upstream1: it refused the gateway's key" in err["message"]
        assert "cannot be reached" not in err["message"]
        assert "wrong-key" not in text and "wants-this-key" not in text


def test_redis_without_its_package_says_what_to_install(tmp_path: Path) -> None:
    # A redis that cannot be imported, as when the extra is not installed.
    shim = tmp_path / "redis"
    shim.mkdir()
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redis'\", name='redis')\n"
    )
    done = run_serve(
        ["--redis", "redis://127.0.0.1:9/0", "--upstream", "http://127.0.0.1:9/v1"],
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == expected("redis-missing")[0]
    assert "ails[redis]" in done.stderr
    assert "Traceback" not in done.stderr
