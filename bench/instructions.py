"""Instructions per request of ``ails serve`` and the pass-through proxy, counted
by callgrind: a measure that a busy machine does not blur, for A/B of a change.

    .venv/bin/python bench/instructions.py [--n 500] [--clients 32] [--targets pt,gw]
        [--no-access-log] [--tests rate,stream] [--keep DIR]

Each target runs under ``valgrind --tool=callgrind`` with instrumentation off;
after a warm-up (150 requests) it is switched on for exactly ``--n`` requests
from ``--clients`` keep-alive connections (bench/rawhttp.py), then off, and
the instructions counted are divided by ``--n``. Non-stream (``x``) and
10-chunk streams (``chunks:10``), the same bodies and key as bench/gateway.py.
User-space instructions only: system calls (socket writes, the access log's
write) are not in it, nor cache misses, so compare this with CPU time per
request (bench/gateway.py), not instead of it. Needs valgrind; a target takes
about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from _procs import HERE, ails_executable, free_port, mock_upstream_server, spawn, stop, wait_http
from rawhttp import Conn, build_request

KEY = "bench-client-key-0123456789abcdef"
MODELS = {"rate": "x", "stream": "chunks:10"}
WARMUP = 150


def request_bytes(url: str, test: str) -> bytes:
    body: dict[str, object] = {
        "model": MODELS[test],
        "messages": [{"role": "user", "content": "go"}],
    }
    if test == "stream":
        body["stream"] = True
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    return build_request(url + "/chat/completions", json.dumps(body).encode(), headers)


async def send(url: str, data: bytes, n: int, clients: int) -> int:
    """``n`` requests over ``clients`` connections; the number that failed."""
    left, failed = [n], [0]

    async def client() -> None:
        conn = Conn(url)
        try:
            while left[0] > 0:
                left[0] -= 1
                status, body = await conn.request(data)
                failed[0] += status != 200 or not body
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return failed[0]


def control(pid: int, option: str) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], capture_output=True, timeout=300)


def measure(target: str, upstream: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    out = Path(f"/tmp/ails-callgrind-{target}-{os.getpid()}.out")
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    if target == "pt":
        cmd = [sys.executable, str(HERE / "passthrough_proxy.py"), "--upstream", upstream]
        cmd += ["--port", str(port)]
    else:
        cmd = [str(ails_executable()), "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--upstream", upstream, "--api-key", KEY]
        if args.no_access_log:
            cmd.append("--no-access-log")
        cmd += args.serve_arg
    log = Path(f"/tmp/ails-callgrind-{target}.log")
    proc = spawn(valgrind + cmd, log=log, env={"AILS_SERVE_LOOP": "uvloop"})
    url = f"http://127.0.0.1:{port}/v1"
    result: dict[str, float] = {}
    try:
        wait_http(url + "/models", proc, 300, log)
        for test in args.tests.split(","):
            data = request_bytes(url, test)
            asyncio.run(send(url, data, WARMUP, args.clients))
            control(proc.pid, "--zero")
            control(proc.pid, "--instr=on")
            failed = asyncio.run(send(url, data, args.n, args.clients))
            control(proc.pid, "--instr=off")
            control(proc.pid, f"--dump={test}")
            dumps = sorted(glob.glob(f"{out}.*"), key=os.path.getmtime)
            text = Path(dumps[-1]).read_text() if dumps else ""
            found = re.search(r"^totals: (\d+)", text, re.M)
            if failed or found is None:
                raise SystemExit(
                    f"{target} {test}: {failed} failed requests, totals found: {found}"
                )
            result[test] = int(found.group(1)) / args.n
            print(f"{target} {test}: {result[test] / 1000:.0f}k instructions/request", flush=True)
    finally:
        stop(proc, timeout=30)
        for f in glob.glob(f"{out}*"):
            if args.keep:
                os.replace(f, Path(args.keep) / f"{target}{Path(f).suffix}")
            else:
                os.remove(f)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="requests counted per test")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--targets", default="pt,gw", help="pt (the proxy), gw (ails serve)")
    ap.add_argument("--tests", default="rate,stream")
    ap.add_argument("--no-access-log", action="store_true", help="ails serve without it")
    ap.add_argument(
        "--serve-arg", action="append", default=[], help="one more argument to ails serve"
    )
    ap.add_argument("--keep", metavar="DIR", help="keep the callgrind dumps there")
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with mock_upstream_server(list(MODELS.values())) as mock:
        results = {t: measure(t, mock.url, args) for t in args.targets.split(",")}
    if "pt" in results and "gw" in results:
        for test, base in results["pt"].items():
            print(f"{test}: ails serve / pass-through = {results['gw'][test] / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
