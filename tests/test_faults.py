"""Every upstream fault of tests/fault_matrix.py, against the client library and
through ``ails serve``: what each raises or answers, within a bounded time, and
that connections and memory come back afterwards.

The upstream is tests/upstream.py in its own process, so that the memory
measured here is the client's alone; the gateway is its own process too, and
its open files and RSS are read from /proc.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import re
import socket
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import ails
from ails.errors import AilsError, ProviderError
from fault_matrix import FAULTS, HELLO, IDLE_S, REFUSED, RETRY_DATE, TOTAL_S, Fault
from gateway_proc import Gateway
from ready_proc import ready_server
from upstream import Upstream

HERE = Path(__file__).resolve().parent
#: The retry-after HTTP date, fixed for the module: the upstream lists the
#: scenario that carries it, and the gateway only routes listed models.
RETRY_AT = time.time() + 3600
RETRY_HTTP_DATE = email.utils.formatdate(RETRY_AT, usegmt=True)
#: Live memory the client may gain from its first measured round of every
#: fault to its last. Measured: it goes up and down within ~16 KiB (the pool's
#: and the loop's bookkeeping, swept now and then), with no trend over 12
#: rounds; a leak of 1 KiB per request (44 KiB over two rounds) is over this.
CLIENT_MEMORY_SLACK = 32 * 1024
MEASURED_ROUNDS = 3
GATEWAY_ROUNDS = 2


def scenario(row: Fault) -> str:
    return row.scenario.replace(RETRY_DATE, RETRY_HTTP_DATE)


def expected_retry_after(row: Fault) -> float:
    """The row's retry-after; for the HTTP date, the seconds left until it now
    (the row says about an hour: the date was fixed when the module loaded)."""
    assert row.retry_after is not None
    if RETRY_DATE in row.scenario:
        assert row.retry_after - 600 < RETRY_AT - time.time() <= row.retry_after
        return RETRY_AT - time.time()
    return row.retry_after


def ids(rows: list[Fault]) -> list[str]:
    return [re.sub(r"[^a-z0-9]+", "-", r.fault.lower()).strip("-") for r in rows]


# -- the upstream, in its own process ---------------------------------------------------


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    models = [scenario(f) for f in FAULTS if f.scenario != REFUSED] + ["test-model"]
    args = [a for m in models for a in ("--model", m)]
    with ready_server([sys.executable, str(HERE / "upstream.py"), "--port", "0", *args]) as url:
        yield url


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the client library ---------------------------------------------------------------------


@asynccontextmanager
async def clients(upstream_url: str) -> AsyncIterator[tuple[ails.AsyncClient, ails.AsyncClient]]:
    """The client for the upstream, and one for a closed port."""
    kw: dict[str, Any] = {"max_retries": 0, "timeout": TOTAL_S, "idle_timeout": IDLE_S}
    live = ails.AsyncClient(providers={"openai": {"base_url": upstream_url, "api_key": "k"}}, **kw)
    dead_url = f"http://127.0.0.1:{closed_port()}/v1"
    dead = ails.AsyncClient(providers={"openai": {"base_url": dead_url, "api_key": "k"}}, **kw)
    try:
        yield live, dead
    finally:
        await live.aclose()
        await dead.aclose()


@dataclass
class Outcome:
    seconds: float
    error: AilsError | None
    text: str


async def client_outcome(live: ails.AsyncClient, dead: ails.AsyncClient, row: Fault) -> Outcome:
    client = dead if row.scenario == REFUSED else live
    started = time.monotonic()
    try:
        stream = await client.chat.completions.create(
            model=f"openai/{scenario(row)}", messages=HELLO, stream=True
        )
        text = "".join([t async for t in stream.text()])
    except AilsError as exc:
        return Outcome(time.monotonic() - started, exc, "")
    return Outcome(time.monotonic() - started, None, text)


def pool_state(client: ails.AsyncClient) -> tuple[int, int]:
    """(connections in use, idle connections kept) of the client's aiohttp pool.

    aiohttp has no public counters; ``_acquired`` and ``_conns`` are its
    connector's own bookkeeping (aiohttp 3.10 to 3.14)."""
    session = client.pool.get("openai")._session  # type: ignore[attr-defined]
    if session is None:
        return 0, 0
    connector = session.connector
    return len(connector._acquired), sum(len(c) for c in connector._conns.values())


def check_client(row: Fault, out: Outcome) -> None:
    assert out.seconds < row.within_s, f"{row.fault}: {out.seconds:.2f} s"
    if row.client_error is None:
        assert out.error is None, out.error
        assert row.client_says in out.text
        return
    exc = out.error
    assert exc is not None, f"{row.fault}: completed with {out.text[:80]!r}"
    assert type(exc).__name__ == row.client_error, repr(exc)
    assert isinstance(exc, getattr(ails.errors, row.client_error))
    assert exc.code == row.client_code, repr(exc)
    assert row.client_says in str(exc), str(exc)
    assert getattr(exc, "retryable", None) == row.retryable
    if row.retry_after is None:
        assert getattr(exc, "retry_after", None) is None
    else:
        assert isinstance(exc, ProviderError)
        assert exc.retry_after == pytest.approx(expected_retry_after(row), abs=2)


@pytest.mark.parametrize("row", FAULTS, ids=ids(FAULTS))
async def test_client_library(upstream_url: str, row: Fault) -> None:
    async with clients(upstream_url) as (live, dead):
        out = await client_outcome(live, dead, row)
        check_client(row, out)
        for c in (live, dead):
            in_use, idle = pool_state(c)
            assert in_use == 0, f"{row.fault}: a connection is still held"
            assert idle <= 1, f"{row.fault}: {idle} idle connections"
        # And the same client goes on working.
        again = await live.chat.completions.create(model="openai/test-model", messages=HELLO)
        assert again.choices[0].message.content == "Hello, who are you? "


async def test_client_memory_returns_to_baseline(upstream_url: str) -> None:
    """After a warm-up round, more rounds of every fault leave no memory behind:
    what is alive after the last round is what was alive after the first."""
    async with clients(upstream_url) as (live, dead):
        for row in FAULTS:  # warm-up: sessions, caches, lazily imported code
            await client_outcome(live, dead, row)
        gc.collect()
        tracemalloc.start()
        try:
            kept = []
            for _ in range(MEASURED_ROUNDS):
                for row in FAULTS:
                    check_client(row, await client_outcome(live, dead, row))
                gc.collect()
                kept.append(tracemalloc.get_traced_memory()[0])
                if len(kept) == 1:
                    first = tracemalloc.take_snapshot()
            grown = tracemalloc.take_snapshot().compare_to(first, "lineno")[:5]
        finally:
            tracemalloc.stop()
        assert kept[-1] - kept[0] < CLIENT_MEMORY_SLACK, "\n".join(map(str, grown))
        assert pool_state(live)[0] == 0 and pool_state(dead) == (0, 0)


# -- the gateway ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(upstream_url: str) -> Iterator[Gateway]:
    dead = Upstream(models=["refused-model"]).start()
    args = [
        "--upstream", upstream_url,
        "--upstream", dead.base_url,
        "--max-retries", "0",
        "--idle-timeout", str(IDLE_S),
        "--timeout", str(TOTAL_S),
    ]  # fmt: skip
    with Gateway(args) as g:
        dead.stop()  # listed at startup, refusing connections from now on
        yield g
    assert "Traceback" not in g.log


@dataclass
class Answer:
    seconds: float
    status: int
    headers: dict[str, str]
    body: bytes


async def gateway_answer(session: aiohttp.ClientSession, g: Gateway, row: Fault) -> Answer:
    model = "refused-model" if row.scenario == REFUSED else scenario(row)
    body = {"model": model, "messages": HELLO, "stream": True}
    started = time.monotonic()
    async with session.post(f"{g.base_url}/chat/completions", json=body) as resp:
        data = await resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
        return Answer(time.monotonic() - started, resp.status, headers, data)


def check_gateway(row: Fault, a: Answer) -> None:
    assert a.seconds < row.within_s, f"{row.fault}: {a.seconds:.2f} s"
    assert a.status == row.gateway_status, a.body[:300]
    if a.status != 200:
        err = json.loads(a.body)["error"]
        assert set(err) == {"message", "type", "code", "param"}
        assert err["code"] == row.gateway_code, err
        if row.retry_after is None:
            assert "retry-after" not in a.headers
        else:
            assert int(a.headers["retry-after"]) == pytest.approx(expected_retry_after(row), abs=2)
        return
    assert a.headers["content-type"].startswith("text/event-stream")
    text = a.body.decode("utf-8")
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    events = [json.loads(b.removeprefix("data: ")) for b in text.split("\n\n")[:-2]]
    chunks = [e for e in events if "error" not in e]
    errors = [e for e in events if "error" in e]
    if row.gateway_code is None:
        assert errors == []
    else:
        assert len(errors) == 1 and events[-1] is errors[0], "the error event comes last"
        assert errors[0]["error"]["code"] == row.gateway_code
    if row.chunks is None:
        assert chunks
    else:
        assert len(chunks) == row.chunks, [c["choices"] for c in chunks]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    if row.client_error is None:
        assert row.client_says in content


async def assert_gateway_serves(session: aiohttp.ClientSession, g: Gateway) -> None:
    body = {"model": "test-model", "messages": HELLO}
    async with session.post(f"{g.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        reply = await resp.json()
    assert reply["choices"][0]["message"]["content"] == "Hello, who are you? "


@pytest.mark.parametrize("row", FAULTS, ids=ids(FAULTS))
async def test_gateway(gateway: Gateway, row: Fault) -> None:
    async with aiohttp.ClientSession() as session:
        check_gateway(row, await gateway_answer(session, gateway, row))
        await assert_gateway_serves(session, gateway)


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_gateway_files_and_memory_return_to_baseline(gateway: Gateway) -> None:
    """The gateway's open files (sockets included) and RSS after rounds of every
    fault equal those after a warm-up round (RSS within 10 %: Python keeps freed
    memory, so the warmed process is the baseline)."""
    assert gateway.proc is not None
    pid = gateway.proc.pid

    async def one_round() -> None:
        # A fresh client connection per round, closed after it: only the
        # gateway's own sockets are left to count.
        async with aiohttp.ClientSession() as session:
            for row in FAULTS:
                check_gateway(row, await gateway_answer(session, gateway, row))
            await assert_gateway_serves(session, gateway)

    await one_round()
    base_fds = await settled_fds(pid, None)
    base_rss = rss_bytes(pid)
    for _ in range(GATEWAY_ROUNDS):
        await one_round()
    fds = await settled_fds(pid, base_fds)
    rss = rss_bytes(pid)
    assert fds <= base_fds, f"{fds} open files after, {base_fds} before"
    assert rss <= base_rss * 1.10, f"RSS {rss / 2**20:.1f} MiB after, {base_rss / 2**20:.1f} before"


async def settled_fds(pid: int, target: int | None, timeout: float = 5.0) -> int:
    """Open files once the client's closed connections are gone on the gateway's
    side too (down to ``target``, or stable for 0.3 s)."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        now = open_fds(pid)
        if (target is not None and now <= target) or (target is None and now == last):
            return now
        last = now
    return last
