"""A scriptable OpenAI-compatible upstream for tests: a real aiohttp server on 127.0.0.1.

The project tests HTTP code against real servers, never HTTP mocks. ``Upstream``
runs its own event loop in a daemon thread, so sync and async tests use it alike::

    with Upstream() as up:
        ...  # POST f"{up.base_url}/chat/completions" with {"model": "chunks:3", ...}

It also runs as a subprocess for gateway tests and benchmarks::

    python tests/upstream.py --port 0 [--api-key K] [--signed] [--models A,B] [--model C]
    # prints "READY <port>"

Behaviour is chosen by the request's ``model``: a scenario name with colon-separated
arguments. ``stream: true`` answers ``chat.completion.chunk`` SSE (``data: {json}``
events, ``data: [DONE]``); otherwise one ``chat.completion`` JSON whose content is
the concatenation of what the stream would send, always with ``usage``.

Chunk ``i`` (0-based) has content ``"tok{i} "`` unless the scenario says otherwise.
The first chunk's delta carries ``role: assistant``; the last content chunk is
followed by a chunk with an empty delta and ``finish_reason`` (``"stop"``, or
``"length"`` when ``max_tokens``/``max_completion_tokens`` cut the content). With
``stream_options.include_usage`` a ``choices: []`` chunk with ``usage`` precedes
``[DONE]`` (P = words in all messages' string contents, C = content chunks sent).

=========================  ==================================================================
model                      stream (``stream: true``) / non-stream
=========================  ==================================================================
any plain name             echo: one chunk per word of the last message's string content
(``test-model``, ``x:y``)  (``word + " "``); 5 ``tok{i}`` chunks when it is empty/not text.
                           With function ``tools``, a last user message beginning
                           ``please NAME`` (a tool's) is answered by a call of it: arguments
                           ``{"FIRST_PARAM": "words after the name"}``, ``finish_reason:
                           tool_calls``; the tool's result (a ``tool`` message) is echoed
``chunks:N``               N chunks. N > 1000: 100 events per write
``keepalive:N:MS``         per chunk: ``: keep-alive`` comment, sleep MS, chunk.
                           non-stream: sleeps N*MS then answers
``pingonly:SECONDS``       200 SSE headers, ``: ping`` every 0.1 s for SECONDS, then ends
                           the body cleanly with no chunk and no [DONE].
                           non-stream: sleeps SECONDS then aborts (no response)
``split:N``                N chunks ``"привет{i} "``; the whole body written one byte per write
                           (each followed by a loop yield). non-stream: the JSON byte by byte
``crlf:N``                 N chunks, every line ending ``\\r\\n``. non-stream: normal JSON
``slow:N:MS``              N chunks, MS ms sleep between chunks. non-stream: sleeps
                           (N-1)*MS then answers
``stall:MS``               3 chunks: first chunk, sleep MS, the rest. non-stream: sleep, JSON
``status:CODE[:..]``       HTTP CODE, error JSON ``message: "scripted CODE"``,
                           ``code: "scripted"``; optional args ``retry-after=X`` (any text,
                           colons allowed, e.g. an HTTP date) and ``retry-after-ms=X``
``flaky:K:CODE``           the first K attempts with this exact model string (since reset())
                           answer like ``status:CODE``, later ones like ``chunks:3``
``cut:N``                  N chunks, 50 ms pause, transport.abort() (no finish, no [DONE]).
                           non-stream: full Content-Length, half the JSON body, abort
``nodone:N``               N chunks, then a clean end: no finish chunk, no usage, no [DONE].
                           non-stream: normal JSON
``finishnodone:N``         N chunks + finish chunk (+ usage chunk if asked), no [DONE].
                           non-stream: normal JSON
``nonsse``                 200 ``application/json`` ``{"hello":"world"}`` (both modes)
``html``                   200 ``text/html`` ``<html>oops</html>`` (both modes)
``badjson:N``              N chunks then ``data: {not json``, then a clean end.
                           non-stream: 200 ``application/json`` body ``{not json``
``badtype:N``              N chunks (N >= 2), chunk 1's ``content`` the number 5: valid JSON,
                           not a chunk; then finish and ``[DONE]``. non-stream: 5 as the content
``midstream_error:N``      N chunks, then ``data: {"error":{"message":"upstream exploded",
                           "type":"server_error","code":"boom"}}``, then ``data: [DONE]``.
                           non-stream: 200 with that error object as the body
``big:BYTES``              one chunk of BYTES ``"x"`` characters
``invalid_utf8:N``         N chunks; chunk 1's JSON string holds raw bytes ``b"\\xff\\xfe"``
                           after ``tok1 `` (needs N >= 2). non-stream: same bytes in content
``badcalls``               "tok0 ", then tool calls that are not ones (``"function": "oops"``,
                           an index ``"x"`` or 10**9, an id 5, a string) around one good call
                           ``lookup({"q": 1})`` (id ``call_ok``); then finish ``tool_calls``.
                           non-stream: the same in ``message.tool_calls``
``queued:VALUE``            3 chunks; non-stream: the answer with ``x-ails-queue-ms: VALUE``, as
                           an ails gateway says how long it waited for a busy model
``drip:SECONDS[:MS]``      a valid ``chunks:5`` SSE body, one byte every MS ms (default 1000)
                           for SECONDS, then a clean end (the body is likely incomplete).
                           non-stream: same with the JSON body
``endless``                chunks every 10 ms until the client goes away (or max_tokens).
                           non-stream: hangs until the client goes away
``headerstall:MS``         sleeps MS before the headers, then answers like ``chunks:3``
``reset``                  aborts the connection before any header (both modes)
``alternate:N``            N chunks alternating ``"a"`` and ``"b"``
=========================  ==================================================================

``POST /v1/completions`` (legacy text completions) runs the same scenarios with
``text_completion`` shapes (``choices[].text``); a plain name echoes the words of
the prompt (a string, or the first of a list of strings).

A known scenario name with malformed arguments (``chunks:abc``) answers 400. An
unknown name is a plain name. ``max_tokens`` caps the content chunks everywhere.

Requests: ``POST /v1/chat/completions`` is recorded (``requests``) before any check.
With ``api_key`` it needs ``Authorization: Bearer <key>`` (401 ``invalid_api_key``);
``GET /v1/models`` needs it too. With ``signed=True`` the body must verify with
``ails.signing.verify`` (401 with the error's ``code``) and the header must be
``Authorization: Bearer free`` (or the ``api_key`` when one is set). Invalid JSON
answers 400. ``stop()`` aborts in-flight requests, then closes every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

try:  # a source checkout without an installed package still works
    import ails.signing  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ails.errors import SignatureError
from ails.signing import verify

__all__ = ["Recorded", "Upstream", "run_forever"]

CHUNK_ID = "chatcmpl-test"
CREATED = 1700000000
DEFAULT_MODELS = ["test-model"]
#: ``cut``: pause between the last chunk and the abort, so a client has read the chunks.
CUT_PAUSE_S = 0.05
_ERROR_EVENT = (
    b'data: {"error":{"message":"upstream exploded","type":"server_error","code":"boom"}}\n\n'
)
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass
class Recorded:
    """One request received on ``/v1/chat/completions``."""

    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any

    @property
    def model(self) -> Any:
        return self.body.get("model") if isinstance(self.body, dict) else None


class _BadArgs(Exception):
    pass


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _error_body(message: str, *, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


def _error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=_json(_error_body(message, type_=type_, code=code)),
        content_type="application/json",
        headers=headers,
    )


def _int(value: str, *, minimum: int = 0) -> int:
    try:
        n = int(value)
    except ValueError:
        raise _BadArgs(f"not an integer: {value!r}") from None
    if n < minimum:
        raise _BadArgs(f"must be >= {minimum}: {value!r}")
    return n


def _float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise _BadArgs(f"not a number: {value!r}") from None
    if x < 0:
        raise _BadArgs(f"must not be negative: {value!r}")
    return x


def _args(args: list[str], count: int, optional: int = 0) -> list[str]:
    if not count <= len(args) <= count + optional:
        raise _BadArgs(f"expects {count} argument(s), got {len(args)}")
    return args


def _toks(n: int) -> list[str]:
    return [f"tok{i} " for i in range(n)]


@dataclass
class _Ctx:
    """What one chat request asked for, as the scenarios need it."""

    request: web.Request
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int
    sent: int = 0
    finish_reason: str = "stop"
    deliberate_abort: bool = False
    #: A legacy text completion (``/v1/completions``): ``text_completion`` shapes.
    text: bool = False
    _affixes: tuple[bytes, bytes] | None = None

    def cap(self, contents: list[str]) -> list[str]:
        if self.max_tokens is not None and len(contents) > self.max_tokens:
            self.finish_reason = "length"
            return contents[: self.max_tokens]
        return contents

    def chunk(self, i: int, content: str) -> bytes:
        if self.text:
            return self._event([_text_choice(content, None)])
        if i == 0:
            delta = {"role": "assistant", "content": content}
            return self._event([{"index": 0, "delta": delta, "finish_reason": None}])
        if self._affixes is None:  # one template per request: the hot path of benchmarks
            head, _, tail = self._event(
                [{"index": 0, "delta": {"content": "\u0000"}, "finish_reason": None}]
            ).partition(b'"\\u0000"')
            self._affixes = (head, tail)
        head, tail = self._affixes
        return head + _json(content) + tail

    def finish(self) -> bytes:
        if self.text:
            return self._event([_text_choice("", self.finish_reason)])
        return self._event([{"index": 0, "delta": {}, "finish_reason": self.finish_reason}])

    def usage_event(self) -> bytes:
        return self._event([], usage=self.usage())

    def usage(self) -> dict[str, int]:
        p, c = self.prompt_tokens, self.sent
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj: dict[str, Any] = {
            "id": CHUNK_ID,
            "object": "text_completion" if self.text else "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        }
        obj.update(extra)
        return b"data: " + _json(obj) + b"\n\n"

    def tail(self, *, finish: bool = True, done: bool = True) -> bytes:
        out = b""
        if finish:
            out += self.finish()
            if self.include_usage:
                out += self.usage_event()
        if done:
            out += _DONE
        return out

    def completion(self, contents: list[str]) -> bytes:
        self.sent = len(contents)
        if self.text:
            text = {
                "id": CHUNK_ID,
                "object": "text_completion",
                "created": CREATED,
                "model": self.model,
                "choices": [_text_choice("".join(contents), self.finish_reason)],
                "usage": self.usage(),
            }
            return _json(text)
        obj = {
            "id": CHUNK_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(contents)},
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
        }
        return _json(obj)


def _text_choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}


def _prompt_text(body: dict[str, Any]) -> str:
    """A text completion's prompt: a string, or the first of a list of strings."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "prompt" in body:
        return len(_prompt_text(body).split())
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    total = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            total += len(content.split())
    return total


def _echo_contents(body: dict[str, Any]) -> list[str]:
    if "prompt" in body:  # a text completion echoes its prompt's words
        words = _prompt_text(body).split()
        return [w + " " for w in words] if words else _toks(5)
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        if isinstance(content, str) and content.split():
            return [w + " " for w in content.split()]
    return _toks(5)


def _asked_call(body: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(call id, tool name, arguments)`` when the request offers function
    tools and its last message is the user's, beginning ``please NAME`` for one
    of them: the words after the name become the tool's first parameter
    (``input`` when it declares none). A tool result, or any other last
    message, is answered as usual (echoed). The ask must open the message: an
    agent's prompt names its tools in passing (Claude Code's reminders do) and
    must get its echo, not a call."""
    tools, messages = body.get("tools"), body.get("messages")
    if not isinstance(tools, list) or not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    words = content.split() if isinstance(content, str) else []
    if len(words) < 2 or words[0] != "please":
        return None
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name == words[1]:
            parameters = function.get("parameters") or {}  # type: ignore[union-attr]
            properties = parameters.get("properties") if isinstance(parameters, dict) else None
            first = next(iter(properties), "input") if isinstance(properties, dict) else "input"
            rest = " ".join(words[words.index(name) + 1 :])
            return f"call_{name}_{len(messages)}", name, _json({first: rest}).decode()
    return None


_RETRY_AFTER_RE = re.compile(r"(?:^|:)retry-after=(.*?)(?=:retry-after-ms=|$)")
_RETRY_AFTER_MS_RE = re.compile(r"(?:^|:)retry-after-ms=([^:]*)")


class Upstream:
    """A scriptable OpenAI-compatible server on 127.0.0.1, in its own thread."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        signed: bool = False,
        models: list[str] | None = None,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.signed = signed
        self.models = list(models) if models is not None else list(DEFAULT_MODELS)
        self.port = 0
        self._bind_port = port  # 0: a free one
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start_error: BaseException | None = None
        self._stopping = False
        self._active: set[asyncio.Transport] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Upstream:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread; return when listening."""
        if self._thread is not None:
            raise RuntimeError("upstream already started")
        ready = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="test-upstream", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start within 10 s")
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("upstream failed to start") from self._start_error
        return self

    def stop(self) -> None:
        """Abort in-flight requests, close every connection, stop the loop, join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None
            self._loop = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget recorded requests, the disconnect count and every flaky attempt counter."""
        with self._lock:
            self.requests.clear()
            self.disconnects = 0
            self._attempts.clear()

    def wait_for_disconnects(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Poll until ``disconnects >= count``; True when reached within ``timeout`` seconds.

        Blocks the calling thread: from async tests use ``wait_for_disconnects_async``
        (a client closing a connection needs its own loop to run).
        """
        deadline = time.monotonic() + timeout
        while self.disconnects < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    async def wait_for_disconnects_async(self, count: int = 1, timeout: float = 2.0) -> bool:
        """``wait_for_disconnects`` for async tests: keeps the caller's loop running."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._astart("127.0.0.1", self._bind_port))
            except BaseException as exc:
                self._start_error = exc
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _astart(self, host: str, port: int) -> None:
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        addr = runner.addresses[0]
        self.port = int(addr[1])

    async def _astop(self) -> None:
        self._stopping = True
        for transport in list(self._active):
            transport.abort()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ endpoints

    def _auth_ok(self, request: web.Request, expected: str | None) -> bool:
        if expected is None:
            return True
        return request.headers.get("Authorization", "") == f"Bearer {expected}"

    async def _models(self, request: web.Request) -> web.Response:
        if not self._auth_ok(request, self.api_key):
            return _error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "upstream"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        """``POST /v1/embeddings``: one vector ``[len(text), index]`` per input
        string, plus a vendor field (``x_vendor``) a pass-through must keep.
        Model ``status:CODE`` answers CODE; ``inband`` answers 200 with an error."""
        raw = await request.read()
        body: Any = json.loads(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(Recorded(request.path, headers, raw, body))
        if not self._auth_ok(request, self.api_key):
            return _error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        model = body.get("model")
        if isinstance(model, str) and model.startswith("status:"):
            return _error_response(int(model.split(":")[1]), "scripted", code="scripted")
        if model == "inband":
            return web.json_response(_error_body("in-band failure", type_="x", code="inband"))
        given = body.get("input")
        texts = [given] if isinstance(given, str) else list(given)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(t))), float(i)]}
            for i, t in enumerate(texts)
        ]
        answer = {"object": "list", "data": data, "model": model, "x_vendor": "kept"}
        return web.json_response(answer)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(Recorded(request.path, headers, raw, body))

        expected = self.api_key if self.api_key is not None else ("free" if self.signed else None)
        if not self._auth_ok(request, expected):
            return _error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        if body is None:
            return _error_response(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error_response(400, "The request body must be a JSON object.")
        if self.signed:
            try:
                verify(body, now_ms=int(time.time() * 1000))
            except SignatureError as e:
                return _error_response(401, str(e), code=e.code)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error_response(400, "you must provide a model parameter")

        stream_options = body.get("stream_options")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        ctx = _Ctx(
            request=request,
            body=body,
            model=model,
            stream=body.get("stream") is True,
            include_usage=isinstance(stream_options, dict)
            and stream_options.get("include_usage") is True,
            max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens >= 0 else None,
            prompt_tokens=_prompt_tokens(body),
            text=request.path == "/v1/completions",
        )
        transport = request.transport
        if transport is not None:
            self._active.add(transport)
        try:
            return await self._dispatch(ctx)
        except _BadArgs as e:
            return _error_response(400, f"bad scenario {model!r}: {e}", code="bad_scenario")
        finally:
            if transport is not None:
                self._active.discard(transport)

    async def _dispatch(self, ctx: _Ctx) -> web.StreamResponse:
        name, *args = ctx.model.split(":")
        if name == "status":
            return self._status(ctx.model)
        if name == "flaky":
            k_s, code_s = _args(args, 2)
            k, code = _int(k_s), _int(code_s, minimum=100)
            with self._lock:
                attempt = self._attempts[ctx.model] = self._attempts.get(ctx.model, 0) + 1
            if attempt <= k:
                return self._status(f"status:{code}")
            return await self._contents(ctx, _toks(3))
        handler = _SCENARIOS.get(name)
        if handler is None:
            call = _asked_call(ctx.body)
            if call is not None:
                return await self._tool_call(ctx, *call)
            return await self._contents(ctx, _echo_contents(ctx.body))
        return await handler(self, ctx, args)

    def _status(self, model: str) -> web.Response:
        rest = model[len("status:") :]
        code_s, _, opts = rest.partition(":")
        code = _int(code_s, minimum=100)
        if code > 599:
            raise _BadArgs(f"not an HTTP status: {code}")
        headers: dict[str, str] = {}
        if m := _RETRY_AFTER_RE.search(opts):
            headers["Retry-After"] = m.group(1)
        if m := _RETRY_AFTER_MS_RE.search(opts):
            headers["retry-after-ms"] = m.group(1)
        type_ = (
            "server_error"
            if code >= 500
            else "rate_limit_error"
            if code == 429
            else "invalid_request_error"
        )
        if code < 200 or code in (204, 304):
            return web.Response(status=code, headers=headers)
        return _error_response(
            code, f"scripted {code}", type_=type_, code="scripted", headers=headers
        )

    async def _tool_call(
        self, ctx: _Ctx, call_id: str, name: str, arguments: str
    ) -> web.StreamResponse:
        """One call of the tool ``name``: a ``tool_calls`` message, or a stream
        of the call's head, its arguments in two pieces, and ``finish_reason:
        tool_calls``."""
        ctx.finish_reason = "tool_calls"
        ctx.sent = 1
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        if not ctx.stream:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            answer = {"id": CHUNK_ID, "object": "chat.completion", "created": CREATED,
                      "model": ctx.model, "choices": [choice], "usage": ctx.usage()}  # fmt: skip
            return web.Response(body=_json(answer), content_type="application/json")
        head = {**call, "index": 0, "function": {"name": name, "arguments": ""}}
        half = len(arguments) // 2
        deltas = [{"role": "assistant", "content": None, "tool_calls": [head]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in (arguments[:half], arguments[half:])
        ]
        events = b"".join(
            ctx._event([{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas
        )

        async def body(resp: web.StreamResponse) -> None:
            await resp.write(events + ctx.tail())

        return await self._guarded(ctx, body)

    # ------------------------------------------------------------------ stream machinery

    async def _guarded(
        self, ctx: _Ctx, body: Callable[[web.StreamResponse], Awaitable[None]], *, sse: bool = True
    ) -> web.StreamResponse:
        """Prepare a streaming response, run ``body``, count a client going away."""
        resp = web.StreamResponse(headers=_SSE_HEADERS if sse else {"Cache-Control": "no-cache"})
        if not sse:
            resp.content_type = "application/json"
        try:
            await resp.prepare(ctx.request)
            await body(resp)
            await resp.write_eof()
        except asyncio.CancelledError:
            self._count_disconnect(ctx)
            raise
        except ConnectionError:
            self._count_disconnect(ctx)
        return resp

    def _count_disconnect(self, ctx: _Ctx) -> None:
        if not self._stopping and not ctx.deliberate_abort:
            with self._lock:
                self.disconnects += 1

    async def _abort(self, ctx: _Ctx, *, pause: float = 0.0) -> NoReturn:
        """Drop the connection abruptly, after what was written has left the process.

        ``pause`` lets a client consume what was sent first: aiohttp's reader raises a
        connection error before handing out data still buffered when the cut arrives.
        """
        ctx.deliberate_abort = True
        transport = ctx.request.transport
        for _ in range(1000):
            if transport is None or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.001)
        if pause:
            await asyncio.sleep(pause)
        if transport is not None:
            transport.abort()
        # connection_lost cancels this handler (handler_cancellation=True).
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _contents(
        self,
        ctx: _Ctx,
        contents: list[str],
        *,
        before: Callable[[web.StreamResponse, int], Awaitable[None]] | None = None,
        after: Callable[[web.StreamResponse, int], Awaitable[None]] | None = None,
        eol: bytes = b"\n",
        finish: bool = True,
        done: bool = True,
        tail: bytes = b"",
        cut: bool = False,
        transform: Callable[[int, bytes], bytes] | None = None,
        json_delay: float = 0.0,
    ) -> web.StreamResponse:
        """The common shape: content chunks, then finish/usage/[DONE] as asked."""
        contents = ctx.cap(contents)
        if not ctx.stream:
            if json_delay:
                await asyncio.sleep(json_delay)
            payload = ctx.completion(contents)
            if transform is not None:
                payload = transform(-1, payload)
            if cut:
                return await self._cut_json(ctx, payload)
            return web.Response(body=payload, content_type="application/json")

        def fix(b: bytes) -> bytes:
            return b.replace(b"\n", eol) if eol != b"\n" else b

        async def body(resp: web.StreamResponse) -> None:
            n = len(contents)
            if before is None and after is None and transform is None and n > 1000:
                batch: list[bytes] = []
                for i, c in enumerate(contents):
                    batch.append(ctx.chunk(i, c))
                    if len(batch) == 100:
                        await resp.write(fix(b"".join(batch)))
                        batch.clear()
                        ctx.sent = i + 1
                if batch:
                    await resp.write(fix(b"".join(batch)))
                ctx.sent = n
            else:
                for i, c in enumerate(contents):
                    if before is not None:
                        await before(resp, i)
                    ev = ctx.chunk(i, c)
                    if transform is not None:
                        ev = transform(i, ev)
                    await resp.write(fix(ev))
                    ctx.sent = i + 1
                    if after is not None and i < n - 1:
                        await after(resp, i)
            if cut:
                await self._abort(ctx, pause=CUT_PAUSE_S)
            end = ctx.tail(finish=finish, done=False) + tail
            if done:
                end += _DONE
            await resp.write(fix(end))

        return await self._guarded(ctx, body)

    async def _cut_json(self, ctx: _Ctx, payload: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(payload)
        await resp.prepare(ctx.request)
        await resp.write(payload[: len(payload) // 2])
        await self._abort(ctx, pause=CUT_PAUSE_S)

    async def _bytewise(
        self, ctx: _Ctx, payload: bytes, *, interval: float = 0.0, limit: float | None = None
    ) -> web.StreamResponse:
        """Write ``payload`` one byte per write; stop after ``limit`` seconds if given."""
        sse = ctx.stream

        async def body(resp: web.StreamResponse) -> None:
            start = time.monotonic()
            for i in range(len(payload)):
                if limit is not None and time.monotonic() - start >= limit:
                    break
                await resp.write(payload[i : i + 1])
                await asyncio.sleep(interval)

        return await self._guarded(ctx, body, sse=sse)

    # ------------------------------------------------------------------ scenarios

    async def _sc_chunks(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, _toks(_int(n)))

    async def _sc_keepalive(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        n_s, ms_s = _args(args, 2)
        n, delay = _int(n_s), _int(ms_s) / 1000

        async def before(resp: web.StreamResponse, i: int) -> None:
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(delay)

        return await self._contents(ctx, _toks(n), before=before, json_delay=n * delay)

    async def _sc_pingonly(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (s,) = _args(args, 1)
        seconds = _float(s)
        if not ctx.stream:
            await asyncio.sleep(seconds)
            await self._abort(ctx)

        async def body(resp: web.StreamResponse) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await resp.write(b": ping\n\n")
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

        return await self._guarded(ctx, body)

    async def _sc_split(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n_s,) = _args(args, 1)
        contents = ctx.cap([f"привет{i} " for i in range(_int(n_s))])
        if not ctx.stream:
            return await self._bytewise(ctx, ctx.completion(contents))
        events = [ctx.chunk(i, c) for i, c in enumerate(contents)]
        ctx.sent = len(contents)
        return await self._bytewise(ctx, b"".join(events) + ctx.tail())

    async def _sc_crlf(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, _toks(_int(n)), eol=b"\r\n")

    async def _sc_slow(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        n_s, ms_s = _args(args, 2)
        n, delay = _int(n_s), _int(ms_s) / 1000

        async def after(resp: web.StreamResponse, i: int) -> None:
            await asyncio.sleep(delay)

        return await self._contents(
            ctx, _toks(n), after=after, json_delay=max(0, min(n, ctx.max_tokens or n) - 1) * delay
        )

    async def _sc_stall(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (ms_s,) = _args(args, 1)
        delay = _int(ms_s) / 1000

        async def after(resp: web.StreamResponse, i: int) -> None:
            if i == 0:
                await asyncio.sleep(delay)

        return await self._contents(ctx, _toks(3), after=after, json_delay=delay)

    async def _sc_cut(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, _toks(_int(n)), cut=True)

    async def _sc_nodone(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, _toks(_int(n)), finish=False, done=False)

    async def _sc_finishnodone(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, _toks(_int(n)), done=False)

    async def _sc_nonsse(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        return web.Response(body=b'{"hello":"world"}', content_type="application/json")

    async def _sc_html(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    async def _sc_badjson(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        if not ctx.stream:
            return web.Response(body=b"{not json", content_type="application/json")
        return await self._contents(
            ctx, _toks(_int(n)), finish=False, done=False, tail=b"data: {not json\n\n"
        )

    async def _sc_midstream_error(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        if not ctx.stream:
            return web.Response(body=_ERROR_EVENT[6:-2], content_type="application/json")
        return await self._contents(ctx, _toks(_int(n)), finish=False, tail=_ERROR_EVENT)

    async def _sc_big(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, ["x" * _int(n)])

    async def _sc_invalid_utf8(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        marker = "\u2063INVALID\u2063"
        contents = _toks(_int(n))
        if len(contents) > 1:
            contents[1] = "tok1 " + marker

        def transform(i: int, ev: bytes) -> bytes:
            return ev.replace(marker.encode(), b"\xff\xfe")

        return await self._contents(ctx, contents, transform=transform)

    async def _sc_badtype(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        marker = "\u2063NUMBER\u2063"
        contents = _toks(_int(n))
        if len(contents) > 1:
            contents[1] = marker

        def transform(i: int, ev: bytes) -> bytes:
            return ev.replace(_json(marker), b"5")

        return await self._contents(ctx, contents, transform=transform)

    async def _sc_badcalls(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        _args(args, 0)
        good = {"id": "call_ok", "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": 1}'}}  # fmt: skip
        bad: list[Any] = [{"id": "c1", "type": "function", "function": "oops"}, "not a call",
                          {"id": 5, "function": {"name": "h"}},
                          {"function": {"name": 5, "arguments": "{}"}}]  # fmt: skip
        ctx.finish_reason = "tool_calls"
        ctx.sent = 1
        if not ctx.stream:
            answer = json.loads(ctx.completion(["tok0 "]))
            answer["choices"][0]["message"]["tool_calls"] = [*bad, good]
            return web.Response(body=_json(answer), content_type="application/json")
        pieces = [{**b, "index": 0} if isinstance(b, dict) else b for b in bad]
        pieces += [{"index": "x", "function": {"name": "f"}},
                   {"index": 10**9, "function": {"name": "g", "arguments": "{}"}},
                   {**good, "index": 0}]  # fmt: skip
        calls = ctx._event([{"index": 0, "delta": {"tool_calls": pieces}, "finish_reason": None}])

        async def body(resp: web.StreamResponse) -> None:
            await resp.write(ctx.chunk(0, "tok0 ") + calls + ctx.tail())

        return await self._guarded(ctx, body)

    async def _sc_queued(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (value,) = _args(args, 1)
        if not ctx.stream:
            return web.Response(
                body=ctx.completion(_toks(3)),
                content_type="application/json",
                headers={"x-ails-queue-ms": value},
            )
        return await self._contents(ctx, _toks(3))

    async def _sc_drip(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        _args(args, 1, optional=1)
        seconds = _float(args[0])
        interval = _int(args[1]) / 1000 if len(args) > 1 else 1.0
        contents = ctx.cap(_toks(5))
        if ctx.stream:
            payload = b"".join(ctx.chunk(i, c) for i, c in enumerate(contents))
            ctx.sent = len(contents)
            payload += ctx.tail()
        else:
            payload = ctx.completion(contents)
        return await self._bytewise(ctx, payload, interval=interval, limit=seconds)

    async def _sc_endless(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        _args(args, 0)
        if not ctx.stream:
            await asyncio.sleep(3600)  # until the client goes away (handler cancelled)
            raise AssertionError("unreachable")  # pragma: no cover

        async def body(resp: web.StreamResponse) -> None:
            i = 0
            while ctx.max_tokens is None or i < ctx.max_tokens:
                await resp.write(ctx.chunk(i, f"tok{i} "))
                i += 1
                ctx.sent = i
                await asyncio.sleep(0.01)
            ctx.finish_reason = "length"
            await resp.write(ctx.tail())

        return await self._guarded(ctx, body)

    async def _sc_headerstall(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (ms_s,) = _args(args, 1)
        await asyncio.sleep(_int(ms_s) / 1000)
        return await self._contents(ctx, _toks(3))

    async def _sc_reset(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        _args(args, 0)
        await self._abort(ctx)

    async def _sc_alternate(self, ctx: _Ctx, args: list[str]) -> web.StreamResponse:
        (n,) = _args(args, 1)
        return await self._contents(ctx, ["a" if i % 2 == 0 else "b" for i in range(_int(n))])


_Scenario = Callable[[Upstream, _Ctx, list[str]], Awaitable[web.StreamResponse]]
_SCENARIOS: dict[str, _Scenario] = {
    "chunks": Upstream._sc_chunks,
    "keepalive": Upstream._sc_keepalive,
    "pingonly": Upstream._sc_pingonly,
    "split": Upstream._sc_split,
    "crlf": Upstream._sc_crlf,
    "slow": Upstream._sc_slow,
    "stall": Upstream._sc_stall,
    "cut": Upstream._sc_cut,
    "nodone": Upstream._sc_nodone,
    "finishnodone": Upstream._sc_finishnodone,
    "nonsse": Upstream._sc_nonsse,
    "html": Upstream._sc_html,
    "badjson": Upstream._sc_badjson,
    "midstream_error": Upstream._sc_midstream_error,
    "big": Upstream._sc_big,
    "invalid_utf8": Upstream._sc_invalid_utf8,
    "badtype": Upstream._sc_badtype,
    "badcalls": Upstream._sc_badcalls,
    "queued": Upstream._sc_queued,
    "drip": Upstream._sc_drip,
    "endless": Upstream._sc_endless,
    "headerstall": Upstream._sc_headerstall,
    "reset": Upstream._sc_reset,
    "alternate": Upstream._sc_alternate,
}


# ---------------------------------------------------------------------- subprocess entry


async def _serve(
    host: str, port: int, *, api_key: str | None, signed: bool, models: list[str] | None
) -> None:
    up = Upstream(api_key=api_key, signed=signed, models=models)
    await up._astart(host, port)
    print(f"READY {up.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-Unix
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await up._astop()


def run_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    signed: bool = False,
    models: list[str] | None = None,
) -> None:
    """Serve on the calling thread until SIGINT/SIGTERM; print ``READY <port>`` once listening."""
    asyncio.run(_serve(host, port, api_key=api_key, signed=signed, models=models))


def _main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="scriptable OpenAI-compatible test upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--signed", action="store_true")
    parser.add_argument("--models", default=None, help="comma-separated model ids")
    parser.add_argument(
        "--model", action="append", default=[], help="one more model id (may hold commas)"
    )
    ns = parser.parse_args(list(argv) if argv is not None else None)
    models = [m for m in ns.models.split(",") if m] if ns.models else None
    if ns.model:
        models = [*(models or []), *ns.model]
    run_forever(ns.host, ns.port, api_key=ns.api_key, signed=ns.signed, models=models)


if __name__ == "__main__":
    _main()
