"""Many long streams at once: N concurrent 10-second streams through each
target, the wall time until the last one ends and the server's memory per
open stream.

    .venv/bin/python bench/many_streams.py [--streams 1000] [--loop uvloop]

The mock upstream sends ``paced:10:1000`` (10 chunks, one a second). A gateway
whose upstream pool is capped queues every stream beyond the cap, so its time
grows in steps of ~10 s; without a cap all run at once. Memory: the target
process's resident set with all streams open (sampled at mid-stream) minus
before, divided by the streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from _loop import run_on_loop
from _procs import ails_gateway, mock_upstream_server, passthrough_proxy
from rawhttp import Conn, build_request

HERE = Path(__file__).resolve().parent
MODEL = "paced:10:1000"
KEY = "bench-client-key-0123456789abcdef"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run(url: str, pid: int, n: int) -> dict[str, float]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "go"}],
                       "stream": True}).encode()  # fmt: skip
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    data = build_request(url + "/chat/completions", body, headers)
    before = rss_kb(pid)
    ok = 0

    async def one() -> None:
        nonlocal ok
        conn = Conn(url)
        try:
            status, got = await conn.request(data)
            ok += status == 200 and b"[DONE]" in got[-64:]
        finally:
            await conn.close()

    started = time.perf_counter()
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(5)  # mid-stream: every stream that runs at once is open
    peak = rss_kb(pid)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "seconds": time.perf_counter() - started,
        "ok": ok,
        "kb_per_stream": (peak - before) / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args()
    out: dict[str, dict[str, float]] = {}
    with mock_upstream_server(["x", MODEL], loop=args.loop) as mock:
        with passthrough_proxy(mock.url, loop=args.loop) as pt:
            out["pass-through"] = run_on_loop(run(pt.url, pt.pid, args.streams), args.loop)
        # One load generator is one client address: lift the per-client cap.
        cap = ["--max-connections-per-client", str(args.streams + 64)]
        with ails_gateway(mock.url, HERE / ".peers" / "ails-many.log", key=KEY,
                          loop=args.loop, extra=cap) as gw:  # fmt: skip
            out["ails serve"] = run_on_loop(run(gw.url, gw.pid, args.streams), args.loop)
    base = out["pass-through"]["seconds"]
    print(f"{args.streams} concurrent {MODEL} streams, loop {args.loop}")
    print("| target | all done s | × pass-through | complete | KB per open stream |")
    print("|---|--:|--:|--:|--:|")
    for name, r in out.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['seconds'] / base:.2f}× | "
              f"{r['ok']:.0f}/{args.streams} | {r['kb_per_stream']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
