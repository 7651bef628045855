"""Client connections of ``ails serve`` have deadlines and caps (issue 14, item 2).

Against a real gateway subprocess, with short limits so each test is quick: an
idle socket, a head sent slowly, a stalled body and an idle keep-alive
connection are each closed (408 where no answer had started); one address
cannot hold more than its cap, another address still gets in; the total cap
holds; running out of descriptors is logged a bounded number of times.
Attack-sized versions run in tests/test_slow_clients.py (``-m slow``).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from door_matrix import door
from gateway_proc import Gateway
from upstream import Upstream

HEAD_S = 0.6
BODY_S = 0.6
KEEPALIVE_S = 0.8
PER_CLIENT = 4
#: Another loopback address (Linux answers the whole 127/8): the "attacker".
OTHER = "127.0.0.2"
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=["test-model"]) as u:
        yield u


@pytest.fixture(scope="module")
def gw(up: Upstream) -> Iterator[Gateway]:
    args = [
        "--upstream", up.base_url,
        "--client-header-timeout", str(HEAD_S),
        "--client-body-timeout", str(BODY_S),
        "--keepalive-timeout", str(KEEPALIVE_S),
        "--max-connections-per-client", str(PER_CLIENT),
        "--max-connections", "12",
    ]  # fmt: skip
    with Gateway(args) as g:
        yield g


def connect(g: Gateway, source: str = "127.0.0.1") -> socket.socket:
    port = int(g.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return sock


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the gateway closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def answer(data: bytes) -> tuple[int | None, str | None]:
    """The status and error code of the answer before the close (None, None: none)."""
    if not data:
        return None, None
    return status_and_code(data)


def expected(key: str) -> tuple[int | None, str | None]:
    row = door(key)
    return row.status, row.code


def status_and_code(data: bytes) -> tuple[int, str | None]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    code = json.loads(body)["error"]["code"] if body.startswith(b"{") else None
    return status, code


def test_a_silent_connection_is_closed_after_the_head_deadline(gw: Gateway) -> None:
    with connect(gw) as sock:
        started = time.monotonic()
        data = read_all(sock)
        waited = time.monotonic() - started
    assert answer(data) == expected("silent")
    assert HEAD_S * 0.8 <= waited < HEAD_S + 3


def test_a_head_sent_slowly_is_cut_off(gw: Gateway) -> None:
    with connect(gw) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEAD_S + 3:
                break
        data = b"" if closed else read_all(sock)
    assert closed or answer(data) == expected("slow-head")
    assert time.monotonic() - started < HEAD_S + 3


def test_a_stalled_body_is_cut_off(gw: Gateway) -> None:
    body = b'{"model":"test-model","messages":[{"role":"user","content":"hi"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(gw) as sock:
        sock.sendall(head + body[:10])  # and nothing more
        started = time.monotonic()
        data = read_all(sock)
    assert answer(data) == expected("stalled-body")
    assert time.monotonic() - started < BODY_S + 3
    assert b"request body" in data


def test_a_stalled_body_on_messages_is_cut_off_in_anthropics_shape(gw: Gateway) -> None:
    body = b'{"model":"test-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(gw) as sock:
        sock.sendall(head + body[:10])  # and nothing more
        data = read_all(sock)
    status = int(data.split(b" ", 2)[1])
    error = json.loads(data.partition(b"\r\n\r\n")[2])
    assert status == 408
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "request body" in error["error"]["message"]


def test_an_idle_keepalive_connection_is_closed(gw: Gateway) -> None:
    with connect(gw) as sock:
        sock.sendall(HEALTH)
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        rest = read_all(sock)  # nothing more: the close
    assert answer(rest) == expected("keepalive")
    assert time.monotonic() - started < KEEPALIVE_S + 3


def test_one_address_holds_at_most_its_cap_and_others_still_get_in(gw: Gateway) -> None:
    held = [connect(gw, OTHER) for _ in range(PER_CLIENT)]
    try:
        time.sleep(0.1)
        with connect(gw, OTHER) as extra:
            assert answer(read_all(extra)) == expected("per-client")
        with connect(gw) as mine:  # another address is not affected
            mine.sendall(HEALTH)
            mine.settimeout(5)
            assert mine.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    assert gw.wait_for_log("refused a connection from 127.0.0.2")


def test_the_total_cap_holds(gw: Gateway) -> None:
    held = [connect(gw, f"127.0.0.{10 + i}") for i in range(12)]
    try:
        time.sleep(0.1)
        with connect(gw, "127.0.0.40") as extra:
            assert answer(read_all(extra)) == expected("total")
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)  # the closes reach the gateway; it admits again
    with connect(gw) as sock:
        sock.sendall(HEALTH)
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_running_out_of_descriptors_is_logged_at_a_bounded_rate(up: Upstream) -> None:
    # 48 open files at most: a few dozen connections exhaust them before any cap.
    # The plain loop: it reports a failed accept() to the loop's exception
    # handler; uvloop retries silently (docs/gateway.md says so).
    args = ["--upstream", up.base_url, "--client-header-timeout", "30", "--loop", "asyncio"]
    with Gateway(args, nofile=48) as g:
        socks: list[socket.socket] = []
        try:
            for _ in range(80):
                try:
                    socks.append(connect(g))
                except OSError:
                    break
            time.sleep(3)  # asyncio retries accept() once a second
            accept_lines = [ln for ln in g.lines if "cannot accept connections" in ln]
            assert g.wait_for_log("cannot accept connections")
            assert 1 <= len(accept_lines) <= 2
            assert door("emfile").status is None
            assert not any("Traceback" in ln for ln in g.lines)
        finally:
            for s in socks:
                s.close()
        time.sleep(1.5)
        with connect(g) as sock:  # serving again once they are gone
            sock.sendall(HEALTH)
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
