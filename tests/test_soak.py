"""Load and soak: 64 concurrent streaming clients through ``ails serve`` for a
minute, a fifth of the requests dropped mid-stream on purpose.

The slow target (``pytest -m slow``, run by scripts/test.sh and so by .ci/run).
bench/mock_upstream.py answers ``paced:20:10``: 20 chunks 10 ms apart, the
finish chunk and ``[DONE]``. The gateway's open files are counted once it
listens, its RSS after a warm-up round; then the soak, and once the gateway's
idle upstream connections have expired (aiohttp closes them 15 to 30 s after
their last use):

* no unexpected error: every request got a 200, and every stream that was
  read to its end is complete (20 chunks in order, ``stop``, then ``[DONE]``);
* open files back to what they were before any load (sockets included):
  nothing held for the streams that were dropped, nothing for those that ended;
* RSS within 10 % of the warmed baseline (Python keeps freed memory for reuse,
  so the warmed process, not the fresh one, is the baseline);
* the latency of each completed stream (to its first chunk, to ``[DONE]``),
  with p50 and p99, written as JSON (``AILS_SOAK_REPORT``, else a temp file)
  and printed; docs/reliability.md records a run.

``AILS_SOAK_SECONDS`` (default 60) sets the soak's length; every loop here is
bounded in time and count, and everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway_proc import Gateway
from ready_proc import ready_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 64
SOAK_S = float(os.environ.get("AILS_SOAK_SECONDS", "60"))
WARMUP_S = 8.0
MODEL = "paced:20:10"
CHUNKS = 20
#: The share of requests a client drops mid-stream on purpose.
DROP_SHARE = 0.2
#: The gateway's idle upstream connections close 15 to 30 s after their last
#: use (aiohttp's keep-alive of 15 s, swept every 15 s): the longest wait for
#: its open files to fall back.
DRAIN_S = 40.0
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    # Its stderr is dropped: it prints a traceback for every stream the gateway
    # closes early, which is what a fifth of the streams do here.
    mock = ROOT / "bench" / "mock_upstream.py"
    cmd = [sys.executable, str(mock), "--port", "0", "--models", f"x,{MODEL}"]
    with ready_server(cmd, stderr=subprocess.DEVNULL) as url:
        yield url


@dataclass
class Tally:
    requests: int = 0
    completed: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)
    first_chunk_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)


async def one_client(url: str, until: float, rng: random.Random, tally: Tally) -> None:
    body = json.dumps({"model": MODEL, "messages": HELLO, "stream": True}).encode()
    headers = {"Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        for _ in range(100_000):  # bounded: a paced stream takes ~0.2 s
            if loop.time() >= until:
                return
            drop_after = rng.randint(1, CHUNKS - 1) if rng.random() < DROP_SHARE else None
            tally.requests += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        tally.errors.append(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
                        continue
                    events: list[str] = []
                    first: float | None = None
                    async for line in resp.content:
                        if not line.startswith(b"data: "):
                            continue
                        if first is None:
                            first = time.perf_counter()
                        events.append(line[6:].decode().rstrip("\n"))
                        if drop_after is not None and len(events) >= drop_after:
                            resp.close()  # the client goes away mid-stream
                            break
                    if drop_after is not None:
                        tally.dropped += 1
                        continue
                    problem = check_stream(events)
                    if problem:
                        tally.errors.append(problem)
                        continue
                    tally.completed += 1
                    assert first is not None
                    tally.first_chunk_ms.append((first - started) * 1000)
                    tally.total_ms.append((time.perf_counter() - started) * 1000)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")


def check_stream(events: list[str]) -> str | None:
    """None if the stream is complete: every chunk, in order, then stop and [DONE]."""
    if not events or events[-1] != "[DONE]":
        return f"no [DONE]: {events[-1:]}"
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return f"an error event: {chunks[-1]}"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    expected = [("hello", " world")[i % 2] for i in range(CHUNKS)]
    if contents[:-1] != expected or chunks[-1]["choices"][0]["finish_reason"] != "stop":
        return f"incomplete: {len(chunks)} chunks"
    return None


async def load(url: str, seconds: float, seed: int) -> Tally:
    tally = Tally()
    until = asyncio.get_running_loop().time() + seconds
    clients = [one_client(url, until, random.Random(seed + i), tally) for i in range(CLIENTS)]
    await asyncio.wait_for(asyncio.gather(*clients), timeout=seconds + 60)
    return tally


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drained_fds(pid: int, target: int) -> int:
    """Open files once idle connections are gone: as soon as they are down to
    ``target``, or what they are after DRAIN_S."""
    for _ in range(int(DRAIN_S / 0.25)):
        fds = open_fds(pid)
        if fds <= target:
            break
        await asyncio.sleep(0.25)
    return open_fds(pid)


def write_report(path: Path, figures: dict[str, object]) -> None:
    text = json.dumps(figures, indent=2)
    path.write_text(text + "\n")
    print(f"\nsoak figures ({path}):\n{text}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_soak(mock_url: str, tmp_path: Path) -> None:
    args = ["--upstream", mock_url, "--no-access-log", "--no-ui", "--max-retries", "0"]
    with Gateway(args) as g:
        assert g.proc is not None
        pid = g.proc.pid
        url = f"{g.base_url}/chat/completions"
        # Listening, one idle upstream connection (its model list) at most.
        base_fds = open_fds(pid)

        warm = await load(url, WARMUP_S, seed=1)
        assert warm.errors == [], warm.errors[:5]
        base_rss = rss_bytes(pid)
        cpu_before = cpu_seconds(pid)

        started = time.monotonic()
        soak = await load(url, SOAK_S, seed=1000)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
        peak_rss = rss_bytes(pid)

        fds = await drained_fds(pid, base_fds)
        rss = rss_bytes(pid)
        assert g.proc.poll() is None, g.log

    figures = {
        "clients": CLIENTS,
        "model": MODEL,
        "seconds": round(elapsed, 1),
        "requests": soak.requests,
        "completed": soak.completed,
        "dropped_mid_stream": soak.dropped,
        "unexpected_errors": len(soak.errors),
        "streams_per_s": round(soak.requests / elapsed, 1),
        "first_chunk_ms": {
            "p50": round(percentile(soak.first_chunk_ms, 0.50), 2),
            "p99": round(percentile(soak.first_chunk_ms, 0.99), 2),
        },
        "stream_ms": {
            "p50": round(percentile(soak.total_ms, 0.50), 2),
            "p99": round(percentile(soak.total_ms, 0.99), 2),
            "max": round(max(soak.total_ms), 2),
        },
        "gateway_cpu_s": round(cpu, 1),
        "gateway_fds": {"baseline": base_fds, "after": fds},
        "gateway_rss_mib": {
            "baseline": round(base_rss / 2**20, 1),
            "peak": round(peak_rss / 2**20, 1),
            "after": round(rss / 2**20, 1),
        },
        "warmup": {"requests": warm.requests, "completed": warm.completed},
    }
    write_report(Path(os.environ.get("AILS_SOAK_REPORT") or tmp_path / "soak.json"), figures)

    assert soak.errors == [], soak.errors[:10]
    assert soak.completed > 0 and soak.dropped > 0
    assert elapsed >= SOAK_S
    assert fds <= base_fds, f"{fds} open files after the soak, {base_fds} before"
    assert rss <= base_rss * 1.10, f"RSS {rss / 2**20:.1f} MiB, baseline {base_rss / 2**20:.1f}"
