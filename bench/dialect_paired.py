"""Server CPU time per request of ``ails serve`` in each dialect, paired on
one pinned core, against the chat path.

    .venv/bin/python bench/dialect_paired.py [--rounds 5] [--cpu-seconds 3]

What the dialects issue asked of Anthropic's Messages and OpenAI's Responses
API: at most 15 % more server CPU per request than ``/v1/chat/completions``
at 64 clients. bench/gateway.py measures it in rounds seconds apart, and on
this 2-vCPU machine, whose speed moves by up to 2x within minutes, its
figures went from 1.2x to 1.6x between runs; bench/dialect_instructions.py
counts instructions (noise-free, but user space only). This measures CPU
time the way bench/gateway_paired.py does for ails serve against the
pass-through proxy: three ``ails serve`` processes alike (a key, the default
access log, uvloop), each spoken to in one dialect, sit on the last core; the
mock upstream and the load (this process, bench/rawhttp.py keep-alive
connections) on the others; they take turns of ``--slice`` seconds, the
order rotating each round, until each has used ``--cpu-seconds`` of CPU. A
first round warms them up and is not counted. Per load: each dialect's
median µs per request, the median of the rounds' ratios to chat, each
round's ratio, and the least share of its core a server used in its turns
(below 90 % the load, not the server, may have been the limit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loop import run_on_loop
from _procs import ails_gateway, mock_upstream_server, pin_group
from gateway_paired import SATURATED
from loadgen import Target
from metrics_cpu import paired_round

KEY = "bench-client-key-0123456789abcdef"
DIALECTS = ("chat", "messages", "responses")
#: test -> (label, model, stream)
LOADS = {"rate": ("non-stream", "x", False), "stream": ("10-chunk stream", "chunks:10", True)}
#: The dialects issue's target: server CPU per request, × the chat path's.
GOAL = 1.15

#: test -> dialect -> one figure a round; under ``test + " core"`` the share
#: of its core each server used in its turns.
Figures = dict[str, dict[str, list[float]]]


def measure(args: argparse.Namespace) -> Figures:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs 2 cores: one for the servers, the rest for the mock and the load")
    core, rest = cores[-1], set(cores[:-1])
    figures: Figures = {t + s: {d: [] for d in DIALECTS} for t in LOADS for s in ("", " core")}
    logs = Path(tempfile.mkdtemp(prefix="ails-dialect-paired-"))
    os.sched_setaffinity(0, rest)
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(mock_upstream_server(["x", "chunks:10"]))
        pin_group(mock.pid, rest)
        gws = {
            d: stack.enter_context(ails_gateway(mock.url, logs / f"{d}.log", key=KEY))
            for d in DIALECTS
        }
        for gw in gws.values():
            pin_group(gw.pid, {core})
        print(f"servers on core {core}; the mock and the load on {sorted(rest)}", flush=True)
        for rnd in range(-1, args.rounds):  # round -1: the warm-up, not counted
            shift = rnd % len(DIALECTS)
            order = list(DIALECTS[shift:] + DIALECTS[:shift])  # nobody always goes first
            for test, (label, model, stream) in LOADS.items():
                targets = [
                    (gws[d].pid, gws[d].url, Target(gws[d].url, KEY, d).raw(model, stream),
                     args.clients)
                    for d in order
                ]  # fmt: skip
                got = run_on_loop(paired_round(targets, args), "uvloop")
                if rnd < 0:
                    continue
                for d, (per, _res, _kernel, share) in zip(order, got, strict=True):
                    figures[test][d].append(per)
                    figures[test + " core"][d].append(share)
                print(
                    f"round {rnd + 1}/{args.rounds} {label}: "
                    + ", ".join(
                        f"{d} {figures[test][d][-1]:.0f} µs/req "
                        f"({figures[test + ' core'][d][-1]:.0%} of its core)"
                        for d in order
                    ),
                    flush=True,
                )
    return figures


def render(figures: Figures, clients: int) -> tuple[str, list[str]]:
    """The table (per load and dialect: median µs, the median of the rounds'
    ratios to chat, each round's) and one verdict line per load and dialect."""
    table = (
        f"| paired turns on one pinned core, @{clients} | µs/req chat | dialect | µs/req "
        f"| CPU/req × chat (median of rounds) | each round | least share of its core "
        f"| goal ≤ {GOAL:.2f}× | met |\n|---|--:|---|--:|--:|---|--:|---|---|\n"
    )
    verdicts = []
    for test, (label, _model, _stream) in LOADS.items():
        chat = figures.get(test, {}).get("chat", [])
        for d in DIALECTS[1:]:
            mine = figures.get(test, {}).get(d, [])
            if not chat or not mine:
                continue
            ratios = [x / y for x, y in zip(mine, chat, strict=True)]
            x = statistics.median(ratios)
            shares = figures.get(test + " core", {})
            least = min(v for n in ("chat", d) for v in shares.get(n, [1.0]))
            ok = x <= GOAL
            table += (
                f"| {label} | {statistics.median(chat):.0f} | /v1/{d} "
                f"| {statistics.median(mine):.0f} | {x:.3f}× "
                f"| {', '.join(f'{r:.2f}' for r in ratios)} | {least:.0%} "
                f"| ≤ {GOAL:.2f}× | {'yes' if ok else '**NO**'} |\n"
            )
            verdicts.append(
                f"/v1/{d}, paired: {label} CPU/req {x:.3f}× chat's: "
                f"{'meets' if ok else 'misses'} ≤ {GOAL:.2f}×."
            )
            if least < SATURATED:
                verdicts.append(
                    f"Warning: {label} /v1/{d}: a server used only {least:.0%} of its core "
                    "in a round; the load, not the server, may have been the bottleneck."
                )
    return table, verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="counted rounds, after a warm-up one")
    ap.add_argument("--clients", type=int, default=64, help="connections per server in its turn")
    ap.add_argument("--slice", type=float, default=0.25, help="seconds of one turn")
    ap.add_argument("--cpu-seconds", type=float, default=3.0, help="CPU each server uses a round")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="a round's wall-clock limit")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    figures = measure(args)
    table, verdicts = render(figures, args.clients)
    print(f"\nload average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print(table)
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
