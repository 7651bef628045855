"""Issue 14's open doors, each tried against a real ``ails serve`` (the rows of
tests/door_matrix.py; connections are in tests/test_connections.py, Redis in
tests/test_redis_deadlines.py).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from door_matrix import door
from gateway_proc import Gateway
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
