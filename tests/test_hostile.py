"""Hand-written hostile requests to ``ails serve`` (the rows of tests/fault_matrix.py):
deep nesting, huge strings, wrong types, unicode edge cases, duplicate keys,
numbers out of range, odd bodies, oversized and malformed headers.

Each gets exactly the answer its row says, quickly; every error is an OpenAI
error object; what is passed on reaches the upstream unchanged; and after all
of them the gateway still serves, its log holds no traceback and no 500.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fault_matrix import (
    HOSTILE,
    HOSTILE_HEADS,
    HOSTILE_MAX_BODY,
    WRONG_TYPES,
    Hostile,
    HostileHead,
    WrongTypes,
    wrong_type_body,
)
from gateway_proc import Gateway
from upstream import Upstream

#: No hostile request may take longer than this to be answered.
ANSWER_WITHIN_S = 5.0
VALID_BODY = b'{"model":"test-model","messages":[{"role":"user","content":"Hello"}]}'


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=["test-model"]) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream) -> Iterator[Gateway]:
    args = ["--upstream", up.base_url, "--max-retries", "0", "--timeout", "10"]
    with Gateway([*args, "--max-body-bytes", str(HOSTILE_MAX_BODY)]) as g:
        yield g


def exchange(g: Gateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange on a fresh socket (``Connection: close``)."""
    port = int(g.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def raw_post(
    body: bytes,
    *,
    content_type: bytes | None = b"application/json",
    extra: bytes = b"",
    path: bytes = b"/v1/chat/completions",
) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n" + body


def error_of(body: bytes) -> dict[str, Any]:
    obj = json.loads(body)
    assert set(obj) == {"error"}, obj
    err = obj["error"]
    assert set(err) == {"message", "type", "code", "param"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize("row", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_body(gw: Gateway, up: Upstream, row: Hostile) -> None:
    up.reset()
    started = time.monotonic()
    status, headers, body = exchange(gw, raw_post(row.body()))
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert status == row.status, body[:300]
    assert headers["content-type"].startswith("application/json")
    if row.code is not None:
        assert error_of(body)["code"] == row.code
        assert up.requests == []  # refused before anything reached the upstream
        return
    assert json.loads(body)["object"] == "chat.completion"
    (sent,) = up.requests
    if row.passed_on is not None:
        assert sent.body["messages"][-1]["content"] == row.passed_on
    for name, value in row.upstream_has.items():
        assert sent.body[name] == value and type(sent.body[name]) is type(value)
    # Duplicate keys reach the upstream once: it sees what the gateway checked.
    assert sent.raw.count(b'"model"') == 1


@pytest.mark.parametrize("row", HOSTILE_HEADS, ids=[h.name for h in HOSTILE_HEADS])
def test_hostile_request_head(gw: Gateway, row: HostileHead) -> None:
    request = raw_post(
        VALID_BODY.replace(b"Hello", b"Hi"),
        content_type=row.content_type,
        extra=row.headers(),
        path=row.path(),
    )
    started = time.monotonic()
    status, headers, body = exchange(gw, request)
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert status == row.status, body[:300]
    if row.code is not None:
        assert error_of(body)["code"] == row.code
    elif status == 200:
        assert json.loads(body)["object"] == "chat.completion"
    else:
        assert headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("row", "value"),
    [(w, v) for w in WRONG_TYPES for v in w.values],
    ids=[f"{w.param}={json.dumps(v)[:40]}" for w in WRONG_TYPES for v in w.values],
)
def test_wrong_types_and_values(gw: Gateway, row: WrongTypes, value: object) -> None:
    status, _, body = exchange(gw, raw_post(json.dumps(wrong_type_body(row, value)).encode()))
    assert status == 400, body
    err = error_of(body)
    assert err["code"] == row.code, err
    assert err["param"] == row.param


def test_still_serving_and_nothing_broke(gw: Gateway) -> None:
    status, _, body = exchange(gw, raw_post(VALID_BODY))
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "Hello "
    assert gw.proc is not None and gw.proc.poll() is None
    assert "Traceback" not in gw.log
    assert " 500 " not in gw.log
