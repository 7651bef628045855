"""What the gateway's metrics cost per request, in instructions (callgrind).

    .venv/bin/python bench/metrics_cost.py [--rounds 5] [--requests 200]

``bench/gateway.py --metrics-ab`` gives the same comparison as server CPU
time; on a machine shared with other work that swings by tens of percent from
round to round. Instructions do not: ``ails serve`` runs under
``valgrind --tool=callgrind`` (with and without ``--no-metrics``, both at
once, against the same mock upstream), instrumentation off until it is warm
(``--instr-atstart=no``); then each round turns it on (``callgrind_control -i on``), sends
``--requests`` sequential non-stream requests and as many 10-chunk streams
over one keep-alive connection, and dumps the count. Per round the ratio
with/without; the median of the rounds is the figure.
"""

from __future__ import annotations

import argparse
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

from _procs import ails_executable, free_port, mock_upstream_server, stop, wait_http

KEY = "bench-client-key-0123456789abcdef"
MODELS = ["x", "chunks:10"]


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


def load(port: int, n: int) -> None:
    """``n`` non-stream requests and ``n`` streams, one after another, keep-alive."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    msgs = [{"role": "user", "content": "Hello there"}]
    for model, stream in (("x", False), ("chunks:10", True)):
        body = json.dumps({"model": model, "messages": msgs, "stream": stream})
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
    conn.close()


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
    args = ap.parse_args()
    # SIGTERM ends the run through the ``finally`` below: the servers under
    # valgrind are in sessions of their own and would outlive it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = tempfile.mkdtemp(prefix="ails-metrics-cost-")
    with mock_upstream_server(MODELS) as mock:
        variants = {"metrics": [], "no metrics": ["--no-metrics"]}
        procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
        try:
            for name, extra in variants.items():
                out = Path(tmp) / f"{name.replace(' ', '-')}.cg"
                proc, port = start(mock.url, out, extra)
                procs[name] = (proc, port, out)
            for _, port, _ in procs.values():
                load(port, args.warmup)
            per_request: dict[str, list[float]] = {name: [] for name in procs}
            for rnd in range(args.rounds):
                for name, (proc, port, out) in procs.items():
                    before = set(out.parent.glob(out.name + "*"))
                    control(proc.pid, "-z")  # zero the counts of the warm-up
                    control(proc.pid, "-i", "on")
                    load(port, args.requests)
                    control(proc.pid, "-i", "off")
                    control(proc.pid, "-d")
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not (
                        set(out.parent.glob(out.name + ".*")) - before - {out.with_suffix(".log")}
                    ):
                        time.sleep(0.1)
                    count = instructions(out, before) / (2 * args.requests)
                    per_request[name].append(count)
                    print(f"round {rnd + 1} {name}: {count:,.0f} instructions/request", flush=True)
        finally:
            for proc, _, _ in procs.values():
                stop(proc)  # type: ignore[arg-type]
    ratios = [a / b for a, b in zip(per_request["metrics"], per_request["no metrics"], strict=True)]
    print(
        f"\nmedian of {args.rounds} rounds: with metrics "
        f"{statistics.median(per_request['metrics']):,.0f}, without "
        f"{statistics.median(per_request['no metrics']):,.0f} instructions per request "
        f"(one non-stream + one 10-chunk stream, averaged); with/without "
        f"{statistics.median(ratios):.4f}x (rounds: {', '.join(f'{r:.4f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
