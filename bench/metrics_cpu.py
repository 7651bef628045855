"""The CPU mode of bench/metrics_cost.py: server CPU time per request, with
and without metrics, in alternating turns on a pinned core.

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
import statistics
import tempfile
from pathlib import Path

from _loop import run_on_loop
from _procs import ails_gateway, mock_upstream_server, pin
from metrics_cost import KEY, MODELS, MSGS
from rawhttp import Conn, build_request

#: The loads of --cpu: test -> (model, stream, connections or None for --clients).
LOADS: dict[str, tuple[str, bool, int | None]] = {
    "seq": ("x", False, 1),
    "rate": ("x", False, None),
    "stream": ("chunks:10", True, None),
}


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
    the answers it gave, its CPU time when the round began, the wall time of
    its turns."""

    def __init__(self, pid: int, url: str, data: bytes, clients: int) -> None:
        self.pid, self.data = pid, data
        self.conns = [Conn(url) for _ in range(clients)]
        self.answers = 0
        self.cpu0 = process_cpu(pid)
        self.sys0 = process_times(pid)[1]
        self.busy = 0.0

    async def load(self, seconds: float) -> None:
        """Every connection asks again and again for ``seconds``; returns once
        every answer is read, so the gateway is idle again."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + seconds

        async def client(conn: Conn) -> int:
            n = 0
            while loop.time() < end:
                status, body = await conn.request(self.data)
                if status != 200 or not body:
                    raise RuntimeError(f"status {status}: {body[:200]!r}")
                n += 1
            return n

        self.answers += sum(await asyncio.gather(*(client(c) for c in self.conns)))
        self.busy += loop.time() - start

    def used(self) -> float:
        return process_cpu(self.pid) - self.cpu0


async def paired_round(
    targets: list[tuple[int, str, bytes, int]], args: argparse.Namespace
) -> list[tuple[float, float, float, float]]:
    """Load the gateways in turn, ``--slice`` seconds each, until every one
    has used ``--cpu-seconds`` of CPU (or ``--max-seconds`` passed): each
    gateway's µs of CPU per request, that figure's resolution (two clock
    ticks over its CPU time), the kernel's share of its CPU time, and the
    share of a core it used during its turns (~1: it, not the load, was the
    bottleneck). A gateway is idle while another is loaded, and
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
            t.used() / t.busy,
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
                for name, (per, res, kernel, _core) in zip(order, figures, strict=True):
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
