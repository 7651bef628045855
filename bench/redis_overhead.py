"""What shared state in Redis adds to a request, against the same checks in memory.

    .venv/bin/python bench/redis_overhead.py [--n 2000] [--rounds 4]

One run starts a ``redis-server`` (a free loopback port, no persistence), the
mock upstream (bench/mock_upstream.py), and two ``ails serve`` in front of it
with the same settings but the store: one in memory, one ``--redis``. Each
request touches the store three times, the most a request does: a signed body
(the replay cache) from a client key with requests and tokens per minute (the
rate check before, the tokens used after). Limits are far above what the run
spends, so every request is answered.

Sequential non-stream requests, one aiohttp connection per gateway; the bodies
are signed before the clock starts. ``--rounds`` rounds alternate the two
gateways, so that a busy moment on the machine falls on both; p50 and p99 are
over all rounds. "added" is Redis minus memory. The target is under 0.5 ms
added at p50 on loopback. A PING of the same Redis from this process
(redis-py's asyncio client) is measured too: the floor of one round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import (
    StartError,
    ails_executable,
    free_port,
    mock_upstream,
    spawn,
    stop,
    wait_http,
)
from ails.signing import format_timestamp, sign

KEY = "bench-client-key"
MODEL = "x"


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise StartError("redis-server is not installed (run scripts/install-redis.sh)")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = spawn([exe, *args, "--dir", str(directory)], log=directory / "redis.log")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise StartError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@contextmanager
def gateway(upstream: str, config: Path, log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    cmd = [str(ails_executable()), "serve", "--port", str(port), "--config", str(config)]
    proc = spawn([*cmd, "--upstream", upstream, "--no-access-log", "--no-ui", *extra], log=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 60, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def signed_bodies(n: int, tag: str) -> list[bytes]:
    out = []
    t = format_timestamp(int(time.time() * 1000))
    for i in range(n):
        content = f"bench {tag} {i}"  # distinct texts: distinct signatures, no replay
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": content}],
            "d": time.strftime("%Y-%m-%d"),
            "t": t,
            "s": sign(t, content),
        }
        out.append(json.dumps(body).encode())
    return out


async def run_sequential(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes]
) -> list[float]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    out = []
    for body in bodies:
        started = time.perf_counter()
        async with session.post(f"{url}/chat/completions", data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {await resp.text()}")
        out.append(time.perf_counter() - started)
    return out


async def redis_ping(url: str, n: int) -> list[float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        out = []
        for _ in range(n):
            started = time.perf_counter()
            await client.ping()
            out.append(time.perf_counter() - started)
        return out
    finally:
        await client.aclose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(
    targets: dict[str, str], n: int, rounds: int, warmup: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in targets}
    share = max(1, n // rounds)
    sessions = {
        name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for name in targets
    }
    try:
        for name, url in targets.items():
            await run_sequential(sessions[name], url, signed_bodies(warmup, f"warm-{name}"))
        for r in range(rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                bodies = signed_bodies(share, f"{name}-{r}")
                results[name] += await run_sequential(sessions[name], targets[name], bodies)
    finally:
        for s in sessions.values():
            await s.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=2000, help="measured requests per gateway")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200)
    args = ap.parse_args()

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ails-redis-bench-")))
        config = tmp / "gateway.toml"
        # Limits far above the run: every request is checked and counted, none refused.
        config.write_text(
            f'allow_signed = true\n[keys.bench]\nkey = "{KEY}"\nrpm = 100000000\ntpm = 1000000000\n'
        )
        redis_url = stack.enter_context(redis_server(tmp))
        upstream = stack.enter_context(mock_upstream((MODEL,)))
        targets = {
            "memory": stack.enter_context(gateway(upstream, config, tmp / "memory.log")),
            "redis": stack.enter_context(
                gateway(upstream, config, tmp / "redis.log", "--redis", redis_url)
            ),
        }
        results = asyncio.run(measure(targets, args.n, args.rounds, args.warmup))
        ping = asyncio.run(redis_ping(redis_url, 2000))

    print(
        f"ails serve: Redis-backed checks vs in-memory, {args.n} sequential signed non-stream "
        f"requests each ({args.rounds} alternating rounds), "
        f"{datetime.date.today().isoformat()}, {platform.python_version()}, "
        f"{os.cpu_count()} cores\n"
    )
    print("| store | p50 ms | p99 ms | mean ms |")
    print("| --- | --- | --- | --- |")
    for name, values in results.items():
        mean = statistics.fmean(values) * 1000
        print(f"| {name} | {pct(values, 0.5):.3f} | {pct(values, 0.99):.3f} | {mean:.3f} |")
    added50 = pct(results["redis"], 0.5) - pct(results["memory"], 0.5)
    added99 = pct(results["redis"], 0.99) - pct(results["memory"], 0.99)
    print(f"\nadded by Redis: p50 {added50:+.3f} ms, p99 {added99:+.3f} ms (target p50 < 0.5 ms)")
    print(f"one Redis round trip (redis-py PING): p50 {pct(ping, 0.5):.3f} ms")
    print("verdict:", "met" if added50 < 0.5 else "NOT met")


if __name__ == "__main__":
    main()
