"""The faults and hostile inputs the reliability tests try, as data.

One list of rows per table: tests/test_faults.py and tests/test_hostile.py
run them and assert exactly what each row says; scripts/reliability_table.py
renders the same rows as the tables of docs/reliability.md, and a test checks
that the doc holds exactly that rendering. So the doc says what the tests
assert, and a row changed in one place changes both.

Faults are scripted by tests/upstream.py, chosen by the model name. Both the
client library and the gateway run with an idle timeout of ``IDLE_S`` and a
total limit of ``TOTAL_S``, and no retries, so that each fault shows its own
outcome at once (retries are tested in test_client.py and test_gateway.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from door_matrix import render_doors

IDLE_S = 0.5
TOTAL_S = 1.5
#: A Retry-After given as an HTTP date this far ahead (seconds).
RETRY_DATE_AHEAD_S = 3600
#: The placeholder in a scenario replaced by that HTTP date at run time.
RETRY_DATE = "{retry_date}"
#: Not a scenario of the upstream: a port nothing listens on.
REFUSED = "refused"
#: The body limit of the gateway that the hostile inputs are sent to.
HOSTILE_MAX_BODY = 1024 * 1024
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@dataclass(frozen=True)
class Fault:
    """One upstream fault: what the client library raises, what the gateway answers."""

    fault: str
    #: The upstream's scenario (its model name), or REFUSED.
    scenario: str
    #: The ails.errors class the client raises; None: the stream completes.
    client_error: str | None
    #: Its ``code`` (None: the upstream gave none).
    client_code: str | None
    #: A piece of the error's message, or of the text when the stream completes.
    client_says: str
    #: The gateway's status for ``stream: true``.
    gateway_status: int
    #: The error's code: of the JSON error (a 4xx/5xx) or of the ``data: {"error"}``
    #: event that ends a 200 stream; None: the stream completes.
    gateway_code: str | None
    #: Both sides answer within this many seconds.
    within_s: float
    #: ``retry-after`` the client reports (seconds) and the gateway passes on.
    retry_after: float | None = None
    #: Whether the client's error says a retry may help.
    retryable: bool | None = None
    #: Chunks the gateway's stream carries before it ends (200 only); None:
    #: some, as many as arrive in time.
    chunks: int | None = 0


FAULTS: list[Fault] = [
    Fault("connection refused", REFUSED, "UpstreamUnavailable", "connection_failed", "cannot reach",
          502, "upstream_unavailable", 1.0, retryable=True),
    Fault("reset before the headers", "reset", "UpstreamUnavailable", "connection_failed",
          "Server disconnected", 502, "upstream_unavailable", 1.0, retryable=True),
    Fault("reset mid-stream (after 3 chunks)", "cut:3", "UpstreamUnavailable", "connection_failed",
          "connection lost mid-stream after 3 chunks", 200, "upstream_unavailable", 1.0,
          retryable=True, chunks=3),
    Fault("200 application/json, not an event stream", "nonsse", "ProtocolError",
          "not_event_stream", "expected a text/event-stream answer", 502, "not_event_stream", 1.0),
    Fault("200 text/html, not an event stream", "html", "ProtocolError", "not_event_stream",
          "got text/html", 502, "not_event_stream", 1.0),
    Fault("invalid JSON in a chunk (the 3rd)", "badjson:2", "ProtocolError", "invalid_chunk",
          "chunk 2 is not valid chunk JSON", 200, "invalid_chunk", 1.0, chunks=2),
    Fault("one chunk of 3 MB (over the 1 MiB line limit)", "big:3000000", "ProtocolError",
          "sse_line_too_long", "SSE line longer than 1048576 bytes", 200, "sse_line_too_long",
          1.0),
    Fault("one chunk of 900 kB (under the line limit)", "big:900000", None, None, "xxxxxxxx",
          200, None, 1.0, chunks=2),
    Fault("keep-alive comments only", "pingonly:5", "Timeout", "timeout_idle",
          "no content for 0.5 s (idle timeout) after 0 chunks", 200, "timeout_idle",
          IDLE_S + 1.0, retryable=True),
    Fault("one byte per second", "drip:10:1000", "Timeout", "timeout_idle",
          "no content for 0.5 s (idle timeout)", 200, "timeout_idle", IDLE_S + 1.0,
          retryable=True),
    Fault("an endless stream", "endless", "Timeout", "timeout_total",
          "the total time limit passed mid-stream", 200, "timeout_total", TOTAL_S + 1.0,
          retryable=True, chunks=None),
    Fault("headers that never come", "headerstall:3000", "Timeout", "timeout_idle",
          "within 0.5 s", 504, "timeout_idle", IDLE_S + 1.0, retryable=True),
    Fault("429 without retry-after", "status:429", "RateLimited", "scripted", "scripted 429",
          429, "scripted", 1.0, retryable=True),
    Fault("429, retry-after in seconds", "status:429:retry-after=7", "RateLimited", "scripted",
          "scripted 429", 429, "scripted", 1.0, retry_after=7, retryable=True),
    Fault("429, retry-after as an HTTP date (1 h ahead)", f"status:429:retry-after={RETRY_DATE}",
          "RateLimited", "scripted", "scripted 429", 429, "scripted", 1.0,
          retry_after=RETRY_DATE_AHEAD_S, retryable=True),
    Fault("500", "status:500", "UpstreamUnavailable", "scripted", "scripted 500", 502,
          "scripted", 1.0, retryable=True),
    Fault("502", "status:502", "UpstreamUnavailable", "scripted", "scripted 502", 502,
          "scripted", 1.0, retryable=True),
    Fault("503", "status:503", "UpstreamUnavailable", "scripted", "scripted 503", 502,
          "scripted", 1.0, retryable=True),
    Fault("invalid UTF-8 in a chunk", "invalid_utf8:3", None, None, "tok1 \ufffd\ufffdtok2", 200,
          None, 1.0, chunks=4),
    Fault("no [DONE] and no finish_reason", "nodone:3", "ProtocolError", "stream_truncated",
          "without [DONE] or a finish_reason", 200, "stream_truncated", 1.0, chunks=3),
    Fault("a finish_reason but no [DONE]", "finishnodone:2", None, None, "tok0 tok1 ", 200,
          None, 1.0, chunks=3),
    Fault("an in-band error event", "midstream_error:2", "UpstreamUnavailable", "boom",
          "upstream exploded", 200, "boom", 1.0, retryable=True, chunks=2),
]  # fmt: skip


# -- hostile inputs ----------------------------------------------------------------


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _chat(**fields: object) -> bytes:
    return _json({"model": "test-model", "messages": HELLO, **fields})


def _content(text: str) -> bytes:
    return _json({"model": "test-model", "messages": [{"role": "user", "content": text}]})


def _raw_content(raw: bytes) -> bytes:
    """A body whose content string holds ``raw`` bytes as they are (escapes too)."""
    return b'{"model":"test-model","messages":[{"role":"user","content":"' + raw + b'"}]}'


def _near_limit() -> bytes:
    frame = _content("")
    return _content("x" * (HOSTILE_MAX_BODY - len(frame) - 16))


@dataclass(frozen=True)
class Hostile:
    """A hand-written hostile request body and what the gateway answers."""

    name: str
    body: Callable[[], bytes]
    status: int
    #: The OpenAI error's code; None for a 200.
    code: str | None
    #: What the upstream receives, when the gateway passes the request on: this
    #: must be in the last message's content exactly (unicode cases).
    passed_on: str | None = None
    note: str = ""
    #: Top-level fields the upstream must receive with exactly these values.
    upstream_has: dict[str, object] = field(default_factory=dict)


HOSTILE: list[Hostile] = [
    Hostile("empty body", lambda: b"", 400, "invalid_json"),
    Hostile("whitespace only", lambda: b" \r\n\t ", 400, "invalid_json"),
    Hostile("JSON null", lambda: b"null", 400, "invalid_json"),
    Hostile("a JSON string", lambda: b'"hi"', 400, "invalid_json"),
    Hostile("a JSON array", lambda: b'[{"model":"test-model"}]', 400, "invalid_json"),
    Hostile("truncated JSON", lambda: _chat()[:-3], 400, "invalid_json"),
    Hostile("100,000 nested arrays", lambda: b"[" * 100_000 + b"]" * 100_000, 400,
            "invalid_json", note="refused by the parser's depth limit, not the stack"),
    Hostile("100,000 nested objects", lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400,
            "invalid_json"),
    Hostile("100,000 unclosed arrays", lambda: b"[" * 100_000, 400, "invalid_json"),
    Hostile("a 1 MiB body that fits the limit", _near_limit, 200, None,
            note="one 1 MiB string, passed on"),
    Hostile("a body one byte over the limit",
            lambda: _content("x" * (HOSTILE_MAX_BODY - len(_content("")) + 1)), 413,
            "body_too_large"),
    Hostile("a UTF-8 byte-order mark before the JSON", lambda: b"\xef\xbb\xbf" + _chat(), 400,
            "invalid_json"),
    Hostile("invalid UTF-8 (\\xff)", lambda: _raw_content(b"a\xffb"), 400, "invalid_json"),
    Hostile("overlong UTF-8 (\\xc0\\xaf for /)", lambda: _raw_content(b"\xc0\xaf"), 400,
            "invalid_json"),
    Hostile("a surrogate encoded as UTF-8 (\\xed\\xa0\\x80)", lambda: _raw_content(b"\xed\xa0\x80"),
            400, "invalid_json"),
    Hostile('a lone surrogate escape ("\\ud800")', lambda: _raw_content(b"\\ud800"), 400,
            "invalid_json", note="it has no UTF-8 form, so it cannot be passed on"),
    Hostile('an escaped surrogate pair ("\\ud83d\\ude00")', lambda: _raw_content(b"\\ud83d\\ude00"),
            200, None, passed_on="\U0001f600"),
    Hostile("NUL in the text (\\u0000)", lambda: _content("a\x00b"), 200, None, passed_on="a\x00b"),
    Hostile("right-to-left override, BOM, zero-width joiner, emoji",
            lambda: _content("\u202eabc\ufeff\u200d\U0001f469\u200d\U0001f4bb"), 200, None,
            passed_on="\u202eabc\ufeff\u200d\U0001f469\u200d\U0001f4bb"),
    Hostile("combining marks and a non-BMP character", lambda: _content("e\u0301\u0301 \U00010348"),
            200, None, passed_on="e\u0301\u0301 \U00010348"),
    Hostile("NUL and RTL in the model name", lambda: _json({"model": "a\x00\u202eb",
            "messages": HELLO}), 404, "model_not_found"),
    Hostile("duplicate keys (model twice)",
            lambda: b'{"model":"no-such-model","model":"test-model","messages":[{"role":"user",'
            b'"content":"dup"}]}', 200, None, passed_on="dup",
            note="the last one wins, and the upstream gets the object the gateway checked",
            upstream_has={"model": "test-model"}),
    Hostile("duplicate keys (stream: true, then false)",
            lambda: b'{"model":"test-model","stream":true,"stream":false,"messages":'
            b'[{"role":"user","content":"dup"}]}', 200, None, passed_on="dup",
            note="a JSON answer, not a stream: the last one wins",
            upstream_has={"stream": False}),
    Hostile("temperature 1e309 (past a double)", lambda: _raw_chat(b'"temperature":1e309'), 400,
            "invalid_json"),
    Hostile("temperature -1e309", lambda: _raw_chat(b'"temperature":-1e309'), 400,
            "invalid_json"),
    Hostile("temperature NaN (not JSON)", lambda: _raw_chat(b'"temperature":NaN'), 400,
            "invalid_json"),
    Hostile("temperature Infinity (not JSON)", lambda: _raw_chat(b'"temperature":Infinity'), 400,
            "invalid_json"),
    Hostile("temperature 1e-400 (underflows to 0)", lambda: _raw_chat(b'"temperature":1e-400'),
            200, None, upstream_has={"temperature": 0.0}),
    Hostile("temperature 10^30", lambda: _raw_chat(b'"temperature":' + b"1" + b"0" * 30), 400,
            "invalid_value"),
    Hostile("max_tokens -0", lambda: _raw_chat(b'"max_tokens":-0'), 400, "invalid_value"),
    Hostile("max_tokens 10^30", lambda: _raw_chat(b'"max_tokens":1' + b"0" * 30), 200, None,
            note="a valid integer, passed on: the backend caps it (or --max-tokens-cap)",
            upstream_has={"max_tokens": 10**30}),
    Hostile("max_tokens with 5,000 digits", lambda: _raw_chat(b'"max_tokens":' + b"9" * 5000),
            400, "invalid_json", note="past the parser's integer range"),
    Hostile("max_tokens 1e3 (an integer written as a float)",
            lambda: _raw_chat(b'"max_tokens":1e3'), 200, None,
            note="JSON Schema's integer; passed on as 1000",
            upstream_has={"max_tokens": 1000}),
    Hostile("max_tokens 2.5", lambda: _raw_chat(b'"max_tokens":2.5'), 400, "invalid_type"),
    Hostile("10,000 messages", lambda: _json({"model": "test-model", "messages": HELLO * 10_000}),
            400, "too_many_messages"),
    Hostile("a message that is a 100,000-deep list",
            lambda: b'{"model":"test-model","messages":[' + b"[" * 100_000 + b"]" * 100_000
            + b"]}", 400, "invalid_json"),
]  # fmt: skip


def _raw_chat(field: bytes) -> bytes:
    return b'{"model":"test-model","messages":[{"role":"user","content":"hi"}],' + field + b"}"


@dataclass(frozen=True)
class WrongTypes:
    """Values of the wrong type or range for a field the gateway checks: each
    one is refused with 400, the code, and ``param`` naming the field."""

    param: str
    values: list[object] = field(default_factory=list)
    code: str = "invalid_type"


def _msg(**fields: object) -> list[dict[str, object]]:
    return [{"role": "user", "content": "hi", **fields}]


WRONG_TYPES: list[WrongTypes] = [
    WrongTypes("model", [5, 1.5, True, [], {}]),
    WrongTypes("model", [""], "invalid_value"),
    WrongTypes("messages", ["hi", 5, True, {}]),
    WrongTypes("messages", [[]], "empty_array"),
    WrongTypes("messages[0]", [["hi"], [5], [None], [True]]),
    WrongTypes("messages[0].role", [_msg(role=5), _msg(role=[]), _msg(role=True)]),
    WrongTypes("messages[0].role", [_msg(role="")], "invalid_value"),
    WrongTypes("messages[0].role", [[{"content": "hi"}], _msg(role=None)],
               "missing_required_parameter"),
    WrongTypes("messages[0].content", [_msg(content=5), _msg(content={}), _msg(content=True)]),
    WrongTypes("stream", ["true", 1, [], {}]),
    WrongTypes("stream_options", ["x", 1, [], True]),
    WrongTypes("stream_options.include_usage", [{"include_usage": "yes"}, {"include_usage": 1}]),
    WrongTypes("max_tokens", ["5", 5.5, True, []]),
    WrongTypes("max_tokens", [0, -1], "invalid_value"),
    WrongTypes("max_completion_tokens", ["5", 5.5, False]),
    WrongTypes("max_completion_tokens", [0, -7], "invalid_value"),
    WrongTypes("n", ["1", 1.5, True]),
    WrongTypes("n", [0, -1], "invalid_value"),
    WrongTypes("temperature", ["0.5", True, [], {}]),
    WrongTypes("temperature", [-0.1, 2.01, 1e300], "invalid_value"),
    WrongTypes("top_p", ["1", False]),
    WrongTypes("top_p", [-0.5, 1.01], "invalid_value"),
    WrongTypes("stop", [5, True, {}, ["a", 1], [None]]),
]  # fmt: skip


def wrong_type_body(row: WrongTypes, value: object) -> dict[str, object]:
    """A valid request with ``value`` in ``row.param``."""
    body: dict[str, object] = {"model": "test-model", "messages": HELLO}
    top = row.param.split("[")[0].split(".")[0]
    if row.param.startswith("messages["):
        body["messages"] = value
    elif row.param == "stream_options.include_usage":
        body["stream"] = True
        body["stream_options"] = value
    else:
        body[top] = value
    return body


@dataclass(frozen=True)
class HostileHead:
    """A hostile request line or header set, sent raw on a socket with a valid
    body. ``code`` None with a 400: refused by the HTTP layer (aiohttp's parser)
    with a plain-text 400 and the connection closed, before the API sees it."""

    name: str
    #: Extra header lines (each ending CRLF), or a replacement path.
    headers: Callable[[], bytes]
    status: int
    code: str | None
    path: Callable[[], bytes] = lambda: b"/v1/chat/completions"
    #: The Content-Type line; None: none sent.
    content_type: bytes | None = b"application/json"


HOSTILE_HEADS: list[HostileHead] = [
    HostileHead("a header line over 8190 bytes", lambda: b"X-Junk: " + b"a" * 9000 + b"\r\n",
                400, None),
    HostileHead("an Authorization header over 8190 bytes",
                lambda: b"Authorization: Bearer " + b"k" * 9000 + b"\r\n", 400, None),
    HostileHead("129 headers (the limit is 128)",
                lambda: b"".join(b"X-H%d: v\r\n" % i for i in range(129)), 400, None),
    HostileHead("13 headers of 8,000 bytes (each under the limits)",
                lambda: b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 8000) for i in range(13)),
                200, None),
    HostileHead("a request line over 8190 bytes", lambda: b"", 400, None,
                path=lambda: b"/v1/chat/completions?" + b"a" * 9000),
    HostileHead("NUL in a header value", lambda: b"X-Junk: a\x00b\r\n", 400, None),
    HostileHead("Content-Type: text/plain", lambda: b"", 415, "unsupported_media_type",
                content_type=b"text/plain"),
    HostileHead("Content-Type: application/x-www-form-urlencoded", lambda: b"", 415,
                "unsupported_media_type", content_type=b"application/x-www-form-urlencoded"),
    HostileHead("Content-Type: multipart/form-data", lambda: b"", 415, "unsupported_media_type",
                content_type=b"multipart/form-data; boundary=x"),
    HostileHead("no Content-Type", lambda: b"", 415, "unsupported_media_type",
                content_type=None),
    HostileHead("two Authorization headers", lambda: b"Authorization: Bearer a\r\n"
                b"Authorization: Bearer b\r\n", 400, "duplicate_authorization"),
    HostileHead("Content-Type: application/json; charset=utf-8", lambda: b"", 200, None,
                content_type=b"application/json; charset=utf-8"),
]  # fmt: skip


# -- rendering (scripts/reliability_table.py and the doc test) -----------------------


def _code(text: str | None) -> str:
    return f"`{text}`" if text else "—"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\ufffd", "U+FFFD")


def render_faults() -> str:
    lines = [
        f"Both sides run with an idle timeout of {IDLE_S:g} s, a total limit of "
        f"{TOTAL_S:g} s and no retries.",
        "",
        "| fault | upstream scenario | client library raises | gateway answers "
        "(`stream: true`) | within |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in FAULTS:
        scenario = (
            "a closed port"
            if f.scenario == REFUSED
            else f"`{f.scenario.replace(RETRY_DATE, '<HTTP date>')}`"
        )
        if f.client_error is None:
            client = f'completes: "{_md(f.client_says)}"'
        else:
            parts = [f"`{f.client_error}`"]
            if f.client_code:
                parts.append(f"code {_code(f.client_code)}")
            if f.retryable:
                parts.append("retryable")
            if f.retry_after is not None:
                parts.append(f"retry_after {f.retry_after:g}")
            client = ", ".join(parts) + f': "{_md(f.client_says)}"'
        if f.gateway_status != 200:
            gateway = f"{f.gateway_status} {_code(f.gateway_code)}"
            if f.retry_after is not None:
                gateway += f", `retry-after: {f.retry_after:g}`"
        else:
            chunks = "chunks" if f.chunks is None else f"{f.chunks} chunks"
            event = "" if f.gateway_code is None else f", error event {_code(f.gateway_code)}"
            gateway = f"200, {chunks}{event}, `[DONE]`"
        lines.append(f"| {f.fault} | {scenario} | {client} | {gateway} | {_seconds(f.within_s)} |")
    return "\n".join(lines)


def render_hostile() -> str:
    lines = [
        f"Sent to `ails serve --max-body-bytes {HOSTILE_MAX_BODY}` (non-streamed requests).",
        "",
        "| hostile body | status | code | note |",
        "| --- | --- | --- | --- |",
    ]
    for h in HOSTILE:
        note = h.note
        if h.passed_on is not None:
            note = note or "passed on unchanged"
        lines.append(f"| {_md(h.name)} | {h.status} | {_code(h.code)} | {_md(note)} |")
    lines += [
        "",
        "Request lines and headers (the HTTP layer's limits are aiohttp's, set explicitly: "
        "8190 bytes a line, 128 headers):",
        "",
        "| request | status | answer |",
        "| --- | --- | --- |",
    ]
    for r in HOSTILE_HEADS:
        if r.code is not None:
            answer = f"OpenAI error {_code(r.code)}"
        elif r.status == 200:
            answer = "a completion"
        else:
            answer = "plain text from the HTTP layer, connection closed"
        lines.append(f"| {_md(r.name)} | {r.status} | {answer} |")
    lines += [
        "",
        "Wrong types and values, each refused with 400 and `param` naming the field:",
        "",
        "| field | values tried | code |",
        "| --- | --- | --- |",
    ]
    for w in WRONG_TYPES:
        shown = ", ".join(f"`{_md(json.dumps(v))}`" for v in w.values)
        lines.append(f"| `{w.param}` | {shown} | {_code(w.code)} |")
    return "\n".join(lines)


#: The markers around each generated table in docs/reliability.md.
TABLES: dict[str, Callable[[], str]] = {
    "faults": render_faults,
    "hostile": render_hostile,
    "doors": render_doors,
}


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN {name} table: generated by scripts/reliability_table.py -->"


def end_marker(name: str) -> str:
    return f"<!-- END {name} table -->"
