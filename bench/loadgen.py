"""The load generator of the gateway benchmark, run as its own process, on
uvloop when installed (the servers' loop), optionally pinned to one core.

    python bench/loadgen.py --url http://127.0.0.1:P/v1 [--key K] --tests seq,rate,stream,paced

Prints one JSON object on stdout with a key per test:

* ``seq`` — requests one at a time over one keep-alive connection (after a
  warm-up): latency percentiles in ms, and every latency (``latencies_ms``);
* ``rate`` — non-stream requests/s with ``--concurrency`` clients, counted
  over ``--duration`` seconds after ``--warmup`` seconds;
* ``stream`` — the same with ``stream: true`` (``--stream-model``, e.g.
  ``chunks:10``), each body read to the end and checked for ``[DONE]``;
* ``paced`` — ``--paced-streams`` streams one after another from a paced
  upstream (``--paced-model paced:N:MS``, event i sent at start + i×MS). With
  ``t_i`` the arrival of the i-th ``data:`` line at this client and
  ``o_i = t_i - i*MS``, a stream's lag is ``mean_i(o_i - min_j o_j)``: how late
  the events arrive, on average, against the most punctual one (so a constant
  delay on every event counts 0, one held back or batched counts its delay).
  ``lag_ms`` is the median over streams; ``ttfb_ms`` the median time to the
  first event.

``--dialect messages`` or ``responses`` sends the same request in Anthropic's
Messages or OpenAI's Responses API (to ``/v1/messages`` or ``/v1/responses``),
a stream complete at ``message_stop`` or ``response.completed``.

``seq``, ``rate`` and ``stream`` use bench/rawhttp.py (keep-alive HTTP/1.1 on
raw asyncio streams): cheap enough that the generator is never what saturates
first. ``paced`` reads lines as they arrive with aiohttp. Every loop is
bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import statistics
import sys
import time
from typing import Any

import aiohttp

from _loop import run_on_loop
from rawhttp import Conn, build_request

MESSAGES = [{"role": "user", "content": "go"}]
REQUEST_TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


#: Each dialect the gateway speaks: its path, and how a complete stream ends.
#: A Responses stream ends with ``response.completed`` carrying the whole
#: response, so its marker is looked for in the whole body.
DIALECTS = {
    "chat": ("/chat/completions", b"[DONE]"),
    "messages": ("/messages", b"event: message_stop"),
    "responses": ("/responses", b"event: response.completed"),
}


class Target:
    def __init__(self, url: str, key: str | None, dialect: str = "chat") -> None:
        path, self.end_marker = DIALECTS[dialect]
        self.dialect = dialect
        self.url = url.rstrip("/") + path
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        if dialect == "messages":
            self.headers["anthropic-version"] = "2023-06-01"

    def raw(self, model: str, stream: bool) -> bytes:
        """The whole request as bytes, for the raw client."""
        return build_request(self.url, self.body(model, stream), self.headers)

    def body(self, model: str, stream: bool) -> bytes:
        """The same request in each dialect: one short user message."""
        obj: dict[str, Any] = {"model": model}
        if self.dialect == "responses":
            # store: false, as Codex sends it: the translation, not the state store.
            obj |= {"input": MESSAGES[0]["content"], "store": False}
        else:
            obj["messages"] = MESSAGES
        if self.dialect == "messages":
            obj["max_tokens"] = 64  # required by the Messages API
        if stream:
            obj["stream"] = True
        return json.dumps(obj).encode()

    def complete(self, body: bytes, stream: bool) -> bool:
        """Whether a 200 body is a whole answer."""
        if not stream:
            return body.startswith(b"{")
        if self.dialect == "chat":
            return self.end_marker in body[-64:]
        return self.end_marker in body


async def one_raw(t: Target, conn: Conn, data: bytes, stream: bool) -> bool:
    """Send one pre-built request, read the whole body; True when it succeeded."""
    status, body = await asyncio.wait_for(conn.request(data), REQUEST_TIMEOUT_S)
    return status == 200 and t.complete(body, stream)


_RAW_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError)


async def one(session: aiohttp.ClientSession, t: Target, data: bytes, stream: bool) -> bool:
    """Send one request, read the whole body; True when it succeeded."""
    async with session.post(t.url, data=data, headers=t.headers) as r:
        body = await r.read()
        if r.status != 200:
            return False
        if stream:
            return b"[DONE]" in body[-64:]
        return body.startswith(b"{")


def new_session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def run_seq(t: Target, model: str, n: int, warmup: int, max_s: float) -> dict[str, Any]:
    data = t.raw(model, False)
    lat: list[float] = []
    total = 0
    errors = 0
    first_error = ""
    deadline = time.perf_counter() + max_s
    conn = Conn(t.url)
    try:
        for i in range(warmup + n):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                ok = await one_raw(t, conn, data, False)
            except _RAW_ERRORS as e:
                ok, first_error = False, first_error or repr(e)
                await conn.close()
            dt = time.perf_counter() - t0
            total += ok
            if not ok:
                errors += 1
                if errors > 20 and not lat:
                    break
                continue
            if i >= warmup:
                lat.append(dt * 1000)
    finally:
        await conn.close()
    if not lat:
        return {"n": 0, "errors": errors, "error": first_error or "no successful request"}
    return {
        "n": len(lat),
        "total": total,
        "errors": errors,
        "p50_ms": statistics.median(lat),
        "p99_ms": percentile(lat, 99),
        "mean_ms": statistics.fmean(lat),
        "truncated": len(lat) < n,
        "latencies_ms": [round(x, 4) for x in lat],
    }


async def run_rate(
    t: Target, model: str, stream: bool, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    data = t.raw(model, stream)
    start = time.perf_counter() + warmup
    end = start + duration
    done = 0
    total = 0  # warm-up and tail included: for CPU per request
    errors = 0
    first_error = ""

    async def worker() -> None:
        nonlocal done, total, errors, first_error
        conn = Conn(t.url)
        try:
            await _work(conn)
        finally:
            await conn.close()

    async def _work(conn: Conn) -> None:
        nonlocal done, total, errors, first_error
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            try:
                ok = await one_raw(t, conn, data, stream)
            except _RAW_ERRORS as e:
                ok, first_error = False, first_error or repr(e)
                await conn.close()
            now = time.perf_counter()
            total += ok
            if start <= now < end:
                if ok:
                    done += 1
                else:
                    errors += 1
            if not ok:
                await asyncio.sleep(0.01)  # don't spin on a dead target

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*tasks), timeout=warmup + duration + REQUEST_TIMEOUT_S
        )
    except asyncio.TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out: dict[str, Any] = {"rps": done / duration, "done": done, "total": total, "errors": errors}
    if first_error:
        out["error"] = first_error
    return out


async def run_paced(
    t: Target, model: str, pace_ms: float, streams: int, max_s: float
) -> dict[str, Any]:
    data = t.body(model, True)
    lags: list[float] = []
    ttfb: list[float] = []
    gaps: list[float] = []
    events: list[int] = []
    errors = 0
    first_error = ""
    deadline = time.perf_counter() + max_s
    async with new_session(1) as session:
        # Warm the connection (and the target's upstream pool) first.
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            await one(session, t, t.body("x", False), False)
        for _ in range(streams):
            if time.perf_counter() > deadline:
                break
            arrivals: list[float] = []
            t_send = time.perf_counter()
            try:
                async with session.post(t.url, data=data, headers=t.headers) as r:
                    if r.status != 200:
                        raise aiohttp.ClientResponseError(
                            r.request_info, (), status=r.status, message=await r.text()
                        )
                    async for line in r.content:
                        if line.startswith(b"data:"):
                            arrivals.append(time.perf_counter())
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                errors += 1
                first_error = first_error or repr(e)[:300]
                continue
            if len(arrivals) < 2:
                errors += 1
                continue
            # How late event i is against its schedule, up to a constant: the
            # most punctual event of the stream is the reference (lateness 0).
            offs = [(a - t_send) * 1000 - i * pace_ms for i, a in enumerate(arrivals)]
            best = min(offs)
            lags.append(statistics.fmean(o - best for o in offs))
            ttfb.append((arrivals[0] - t_send) * 1000)
            gaps.extend((b - a) * 1000 for a, b in itertools.pairwise(arrivals))
            events.append(len(arrivals))
    if not lags:
        return {"n": 0, "errors": errors, "error": first_error or "no complete stream"}
    return {
        "n": len(lags),
        "errors": errors,
        "lag_ms": statistics.median(lags),
        "lags_ms": lags,
        "ttfb_ms": statistics.median(ttfb),
        "gap_stdev_ms": statistics.pstdev(gaps),
        "events": events,
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    t = Target(args.url, args.key, args.dialect)
    out: dict[str, Any] = {}
    for name in args.tests.split(","):
        gc.collect()
        if name == "seq":
            out[name] = await run_seq(t, args.model, args.seq_n, args.seq_warmup, args.seq_max_s)
        elif name == "rate":
            out[name] = await run_rate(
                t, args.model, False, args.concurrency, args.duration, args.warmup
            )
        elif name == "stream":
            out[name] = await run_rate(
                t, args.stream_model, True, args.concurrency, args.duration, args.warmup
            )
        elif name == "paced":
            out[name] = await run_paced(
                t, args.paced_model, args.paced_ms, args.paced_streams, args.paced_max_s
            )
        elif name:
            raise SystemExit(f"unknown test {name!r}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL ending in /v1")
    ap.add_argument("--key", default=None, help="sent as 'Authorization: Bearer KEY'")
    ap.add_argument("--tests", default="seq,rate,stream,paced")
    ap.add_argument(
        "--dialect", choices=sorted(DIALECTS), default="chat", help="the API the requests speak"
    )
    ap.add_argument("--model", default="x", help="model for non-stream requests")
    ap.add_argument("--stream-model", default="chunks:10")
    ap.add_argument("--paced-model", default="paced:20:50")
    ap.add_argument("--paced-ms", type=float, default=50.0)
    ap.add_argument("--paced-streams", type=int, default=3)
    ap.add_argument("--paced-max-s", type=float, default=20.0)
    ap.add_argument("--seq-n", type=int, default=2000)
    ap.add_argument("--seq-warmup", type=int, default=200)
    ap.add_argument("--seq-max-s", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    result = run_on_loop(amain(args), args.loop)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
