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

    .venv/bin/python bench/metrics_cost.py --cpu [--rounds 7] [--cpu-seconds 3]

``--cpu`` measures what the issue names, server CPU time per request, so that
the noise between two processes does not drown a few percent: both
``ails serve`` (with and without ``--no-metrics``) are pinned to the same core
(``--gateway-cpu``, the last by default), the mock upstream and this process
(the load generator, bench/rawhttp.py) to the others, and they take turns,
never both loaded at once: in a round, each test (``seq``: one request at a
time on one connection; ``rate``: ``--clients`` connections of non-stream
requests; ``stream``: the same with 10-chunk streams) loads one gateway for
``--slice`` seconds, then the other, and so on (A B A B..., the next round B A
B A...), until each has used ``--cpu-seconds`` of CPU. Short turns put both
under the same conditions when other work comes and goes on the machine. A
gateway's user + system time is read from /proc/PID/stat at the round's start
and end only (it is idle during the other's turns), so the kernel's clock
ticks (10 ms at ``CLK_TCK`` 100) round once per round, not once per turn: each
figure is printed with its resolution, two ticks over the CPU time measured,
0.67 % at the default 3 s. Per test: the median and spread (min-max) of each
gateway's µs per request over the rounds, and the median of the rounds' ratios
with/without. A first round warms both up and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    ails_gateway,
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


# -- --cpu: server CPU time per request, alternating rounds on a pinned core ------------

#: The loads of --cpu: test -> (model, stream, connections or None for --clients).
LOADS: dict[str, tuple[str, bool, int | None]] = {
    "seq": ("x", False, 1),
    "rate": ("x", False, None),
    "stream": ("chunks:10", True, None),
}


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def process_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid``, all its threads (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # from the 3rd field (state) on
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu(pid: int) -> float:
    return sum(process_times(pid))


class Loaded:
    """One gateway under one test in a round: its keep-alive connections,
    the answers it gave, its CPU time when the round began."""

    def __init__(self, pid: int, url: str, data: bytes, clients: int) -> None:
        self.pid, self.data = pid, data
        self.conns = [Conn(url) for _ in range(clients)]
        self.answers = 0
        self.cpu0 = process_cpu(pid)
        self.sys0 = process_times(pid)[1]

    async def load(self, seconds: float) -> None:
        """Every connection asks again and again for ``seconds``; returns once
        every answer is read, so the gateway is idle again."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def client(conn: Conn) -> int:
            n = 0
            while loop.time() < end:
                status, body = await conn.request(self.data)
                if status != 200 or not body:
                    raise RuntimeError(f"status {status}: {body[:200]!r}")
                n += 1
            return n

        self.answers += sum(await asyncio.gather(*(client(c) for c in self.conns)))

    def used(self) -> float:
        return process_cpu(self.pid) - self.cpu0


async def paired_round(
    targets: list[tuple[int, str, bytes, int]], args: argparse.Namespace
) -> list[tuple[float, float, float]]:
    """Load the gateways in turn, ``--slice`` seconds each, until every one
    has used ``--cpu-seconds`` of CPU (or ``--max-seconds`` passed): each
    gateway's µs of CPU per request and that figure's resolution (two clock
    ticks over its CPU time). A gateway is idle while another is loaded, and
    its CPU time is read only at the round's start and end, so the ticks of
    the slices add up rather than their rounding."""
    loaded = [Loaded(*target) for target in targets]  # (pid, url, request, connections)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.max_seconds
    try:
        while True:
            for target in loaded:
                await target.load(args.slice)
            if min(t.used() for t in loaded) >= args.cpu_seconds or loop.time() > deadline:
                break
    finally:
        for target in loaded:
            for conn in target.conns:
                await conn.close()
    await asyncio.sleep(0.3)  # the access logs' buffers (0.1 s) flushed inside the round
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return [
        (
            t.used() / t.answers * 1e6,
            2 * tick / t.used(),
            (process_times(t.pid)[1] - t.sys0) / t.used(),
        )
        for t in loaded
    ]


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def cpu_main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    gw_core = args.gateway_cpu if args.gateway_cpu is not None else cores[-1]
    rest = set(cores) - {gw_core} or {gw_core}
    os.sched_setaffinity(0, rest)  # the load generator, and the mock it starts below
    tests = [t for t in args.tests.split(",") if t]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    # --aa: two gateways alike (both with metrics), the method's own noise floor.
    other, extra = ("metrics again", []) if args.aa else ("no metrics", ["--no-metrics"])
    variants: dict[str, list[str]] = {"metrics": [], other: extra}
    us: dict[str, dict[str, list[float]]] = {t: {v: [] for v in variants} for t in tests}
    worst = 0.0
    logs = Path(tempfile.mkdtemp(prefix="ails-metrics-cpu-"))
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(mock_upstream_server(MODELS))
        gws = {
            name: stack.enter_context(
                ails_gateway(mock.url, logs / f"{name.replace(' ', '-')}.log", key=KEY, extra=extra)
            )
            for name, extra in variants.items()
        }
        for gw in gws.values():
            pin(gw.pid, {gw_core})
        print(f"gateways on core {gw_core}; the mock and the load on {sorted(rest)}", flush=True)

        def request(test: str, url: str) -> tuple[bytes, int]:
            model, stream, conns = LOADS[test]
            body = json.dumps({"model": model, "messages": MSGS, "stream": stream}).encode()
            return build_request(url + "/chat/completions", body, headers), conns or args.clients

        for rnd in range(-1, args.rounds):  # round -1: the warm-up, not counted
            # A B A B..., then B A B A...: neither always goes first.
            order = list(gws) if rnd % 2 == 0 else list(reversed(gws))
            for test in tests:
                targets = [(gws[n].pid, gws[n].url, *request(test, gws[n].url)) for n in order]
                figures = run_on_loop(paired_round(targets, args), "uvloop")
                if rnd < 0:
                    continue
                for name, (per, res, kernel) in zip(order, figures, strict=True):
                    worst = max(worst, res)
                    us[test][name].append(per)
                    print(
                        f"round {rnd + 1} {test} {name}: {per:.1f} µs/request "
                        f"({kernel:.0%} in the kernel; tick resolution {res:.2%})",
                        flush=True,
                    )
    print(
        f"\nload average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"worst tick resolution {worst:.2%}"
    )
    for test in tests:
        a, b = us[test]["metrics"], us[test][other]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(
            f"{test}: metrics {spread(a)}, {other} {spread(b)} µs/request; ratio "
            f"median {statistics.median(ratios):.3f}x, rounds "
            f"{', '.join(f'{r:.3f}' for r in ratios)}"
        )


if __name__ == "__main__":
    main()
