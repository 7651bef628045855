"""What the gateway's metrics cost per request, in instructions (callgrind).

    .venv/bin/python bench/metrics_cost.py [--rounds 5] [--requests 200]

``bench/gateway.py --metrics-ab`` gives the same comparison as server CPU
time; on a machine shared with other work that swings by tens of percent from
round to round. Instructions do not: ``ails serve`` runs under
``valgrind --tool=callgrind`` (with and without ``--no-metrics``, both at
once, against the same mock upstream), instrumentation off until it is warm
(``--instr-atstart=no``); then each round, for non-stream requests and for
10-chunk streams apart, turns it on (``callgrind_control -i on``), sends
``--requests`` of them one after another over one keep-alive connection, and
dumps the count. Per round and kind the ratio with/without; the median of the
rounds is the figure, for each kind and for the two averaged ("both": the
figure of earlier runs). The non-stream count is the steadier: how a
stream's chunks arrive in batches depends on timing, and so does its count.

``--cpu`` measures server CPU time per request instead: bench/metrics_cpu.py
says how.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loop import run_on_loop
from _procs import (
    ails_executable,
    free_port,
    mock_upstream_server,
    stop,
    wait_http,
)
from rawhttp import Conn, build_request

KEY = "bench-client-key-0123456789abcdef"
MODELS = ["x", "chunks:10"]
MSGS = [{"role": "user", "content": "Hello there"}]


def start(upstream: str, out: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        str(ails_executable()),
        "serve",
        "--port",
        str(port),
        "--upstream",
        upstream,
        "--api-key",
        KEY,
        "--no-ui",
        "--loop",
        "uvloop",
        *extra,
    ]
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health", proc, 600)  # type: ignore[arg-type]
    return proc, port


#: The kinds of request counted: name -> (model, stream).
KINDS = {"non-stream": ("x", False), "stream": ("chunks:10", True)}


def load(port: int, n: int, kinds: list[str], concurrency: int = 1) -> None:
    """``n`` requests of each kind, one after another on one keep-alive
    connection, or from ``concurrency`` connections at once."""
    import http.client

    if concurrency > 1:
        run_on_loop(load_at_once(port, n, kinds, concurrency), "uvloop")
        return

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for kind in kinds:
        model, stream = KINDS[kind]
        body = json.dumps({"model": model, "messages": MSGS, "stream": stream})
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
    conn.close()


async def load_at_once(port: int, n: int, kinds: list[str], concurrency: int) -> None:
    url = f"http://127.0.0.1:{port}/v1"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for kind in kinds:
        model, stream = KINDS[kind]
        body = json.dumps({"model": model, "messages": MSGS, "stream": stream}).encode()
        data = build_request(url + "/chat/completions", body, headers)
        left = [n]

        async def client(data: bytes = data, left: list[int] = left) -> None:
            conn = Conn(url)
            try:
                while left[0] > 0:
                    left[0] -= 1
                    status, _ = await conn.request(data)
                    assert status == 200, status
            finally:
                await conn.close()

        await asyncio.gather(*(client() for _ in range(concurrency)))


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instructions(out: Path, before: set[Path]) -> int:
    """The ``Ir`` total of the newest dump of ``out``."""
    dumps = sorted(set(out.parent.glob(out.name + ".*")) - before, key=os.path.getmtime)
    dumps = [d for d in dumps if d.suffix != ".log"]
    if not dumps:
        raise RuntimeError(f"no new dump of {out}")
    total = 0
    for dump in dumps:  # one per thread with --separate-threads; one here
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200, help="of each kind, per round")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument(
        "--concurrency", type=int, default=1, help="connections at once (instructions; 1: one)"
    )
    ap.add_argument("--cpu", action="store_true", help="server CPU time per request instead")
    ap.add_argument(
        "--cpu-seconds",
        type=float,
        default=3.0,
        help="--cpu: load a gateway per test and round until it used this much CPU",
    )
    ap.add_argument("--max-seconds", type=float, default=60.0, help="--cpu: but no longer")
    ap.add_argument(
        "--slice", type=float, default=0.25, help="--cpu: seconds of load before the other's turn"
    )
    ap.add_argument("--clients", type=int, default=16, help="--cpu: connections of rate, stream")
    ap.add_argument("--tests", default="seq,rate,stream", help="--cpu: which loads")
    ap.add_argument(
        "--aa", action="store_true", help="--cpu: both gateways with metrics (the noise floor)"
    )
    ap.add_argument(
        "--gateway-cpu", type=int, default=None, help="--cpu: the gateways' core (default: last)"
    )
    args = ap.parse_args()
    if args.cpu:
        from metrics_cpu import cpu_main  # imported here: it imports this module's constants

        cpu_main(args)
        return
    instructions_main(args)


def count_round(
    proc: subprocess.Popen[bytes], port: int, out: Path, n: int, kind: str, concurrency: int
) -> float:
    """Instructions per request of ``n`` requests of ``kind``, counted alone."""
    before = set(out.parent.glob(out.name + "*"))
    control(proc.pid, "-z")  # zero what came before
    control(proc.pid, "-i", "on")
    load(port, n, [kind], concurrency)
    control(proc.pid, "-i", "off")
    control(proc.pid, "-d")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        set(out.parent.glob(out.name + ".*")) - before - {out.with_suffix(".log")}
    ):
        time.sleep(0.1)
    return instructions(out, before) / n


def average(*values: float) -> float:
    return statistics.fmean(values)


def instructions_main(args: argparse.Namespace) -> None:
    # SIGTERM ends the run through the ``finally`` below: the servers under
    # valgrind are in sessions of their own and would outlive it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = tempfile.mkdtemp(prefix="ails-metrics-cost-")
    variants: dict[str, list[str]] = {"metrics": [], "no metrics": ["--no-metrics"]}
    # kind -> variant -> instructions per request, one per round
    counts: dict[str, dict[str, list[float]]] = {k: {n: [] for n in variants} for k in KINDS}
    with mock_upstream_server(MODELS) as mock:
        procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
        try:
            for name, extra in variants.items():
                out = Path(tmp) / f"{name.replace(' ', '-')}.cg"
                proc, port = start(mock.url, out, extra)
                procs[name] = (proc, port, out)
            for _, port, _ in procs.values():
                load(port, args.warmup, list(KINDS))
            for rnd in range(args.rounds):
                for kind in KINDS:
                    for name, (proc, port, out) in procs.items():
                        count = count_round(proc, port, out, args.requests, kind, args.concurrency)
                        counts[kind][name].append(count)
                        print(f"round {rnd + 1} {kind} {name}: {count:,.0f}", flush=True)
        finally:
            for proc, _, _ in procs.values():
                stop(proc)  # type: ignore[arg-type]
    # Both kinds averaged (a non-stream and a stream per "request"), and each alone.
    rows = {
        "both": {
            n: [statistics.fmean(r) for r in zip(*(counts[k][n] for k in KINDS), strict=True)]
            for n in variants
        }
    }
    rows.update(counts)
    print(f"\ninstructions per request, median of {args.rounds} rounds (with / without):")
    for kind, row in rows.items():
        ratios = [a / b for a, b in zip(row["metrics"], row["no metrics"], strict=True)]
        print(
            f"{kind}: {statistics.median(row['metrics']):,.0f} / "
            f"{statistics.median(row['no metrics']):,.0f} = {statistics.median(ratios):.4f}x "
            f"(rounds {', '.join(f'{r:.4f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
