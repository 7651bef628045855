"""bench/gateway.py's paired phase: ``ails serve`` against the pass-through
proxy by server CPU time per request, in alternating short turns on one
pinned core.

Why a second measure: on a small shared machine (2 vCPUs, a hypervisor that
steals time) the rounds' figures of the same server differ by up to 2x
within one run, and each round's pair is measured seconds apart, so one
round's ratio may read 0.7x or 1.4x. Here both servers sit on the same core
(the last), the mock and the load (this process, bench/rawhttp.py keep-alive
connections) on the others; they take turns of ``slice`` seconds (A B A B,
the next round B A B A) until each has used ``cpu_seconds`` of CPU, so a
slowdown of the machine falls on both alike. A server loaded in its turn runs
its core at ~100 % (measured and printed: the share of a core it used over
its turns; below 90 % the verdict says the load may have been the
bottleneck), so its capacity is 1 / (CPU per request) and the issue's "≥ 0.85× the proxy's
requests/s" is "≤ 1.18× its CPU per request" here. The method is
bench/metrics_cpu.py's (issue 15), which it shares.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable

from _loop import run_on_loop
from _procs import pin_group
from metrics_cpu import paired_round
from rawhttp import build_request

#: test -> (model, stream)
LOADS = {"rate": ("x", False), "stream": ("chunks:10", True)}
MESSAGES = [{"role": "user", "content": "Hello there"}]


#: Below this share of its core during its turns, a server was not saturated.
SATURATED = 0.9


def measure(
    servers: dict[str, tuple[int, str]],
    mock_pid: int,
    key: str,
    rounds: int,
    clients: int,
    loop: str,
    say: Callable[[str], None],
) -> dict[str, dict[str, list[float]]]:
    """``servers``: name -> (pid, base URL); test -> name -> µs of CPU per
    request, one figure a round (a first, warm-up round not counted), and
    under ``test + " core"`` the share of its core each used in its turns."""
    own = os.sched_getaffinity(0)
    cores = sorted(own)
    if len(cores) < 2:
        say("paired phase skipped: it needs 2 cores (one for the servers)")
        return {}
    core, rest = cores[-1], set(cores[:-1])
    turns = argparse.Namespace(slice=0.25, cpu_seconds=3.0, max_seconds=60.0)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    us: dict[str, dict[str, list[float]]] = {
        t + suffix: {n: [] for n in servers} for t in LOADS for suffix in ("", " core")
    }
    os.sched_setaffinity(0, rest)
    pin_group(mock_pid, rest)
    for pid, _ in servers.values():
        pin_group(pid, {core})
    say(f"paired phase: servers on core {core}, the mock and the load on {sorted(rest)}")
    try:
        for rnd in range(-1, rounds):
            order = list(servers) if rnd % 2 == 0 else list(reversed(servers))
            for test, (model, stream) in LOADS.items():
                body = json.dumps({"model": model, "messages": MESSAGES, "stream": stream})
                targets = [
                    (
                        servers[n][0],
                        servers[n][1],
                        build_request(servers[n][1] + "/chat/completions", body.encode(), headers),
                        clients,
                    )
                    for n in order
                ]
                figures = run_on_loop(paired_round(targets, turns), loop)
                if rnd < 0:
                    continue
                for name, (per, _resolution, _kernel, core_share) in zip(
                    order, figures, strict=True
                ):
                    us[test][name].append(per)
                    us[test + " core"][name].append(core_share)
                say(
                    f"paired round {rnd + 1}/{rounds} {test}: "
                    + ", ".join(
                        f"{n} {us[test][n][-1]:.0f} µs/req ({us[test + ' core'][n][-1]:.0%} "
                        "of its core)"
                        for n in order
                    )
                )
    finally:
        os.sched_setaffinity(0, own)
        for pid in [mock_pid, *(pid for pid, _ in servers.values())]:
            pin_group(pid, own)
    return us


def render(
    us: dict[str, dict[str, list[float]]], mine: str, base: str, goal: float, clients: int
) -> tuple[str, list[str]]:
    """The table (per test: medians, the median of the rounds' ratios and
    each round's) and one verdict line per test against ``goal`` (× CPU)."""
    if not us:
        return "", []
    table = (
        f"\n| paired turns on one pinned core | {base} µs/req | {mine} µs/req "
        f"| CPU/req × {base} (median of rounds) | each round | least share of its core "
        f"| goal ≤ {goal:.2f}× | met |\n|---|--:|--:|--:|---|--:|---|---|\n"
    )
    verdicts = []
    for test, label in (("rate", "non-stream"), ("stream", "10-chunk stream")):
        a, b = us.get(test, {}).get(mine, []), us.get(test, {}).get(base, [])
        if not a or not b:
            continue
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        x = statistics.median(ratios)
        ok = x <= goal
        shares = us.get(test + " core", {})
        least = min((v for n in (mine, base) for v in shares.get(n, [])), default=None)
        table += (
            f"| {label} @{clients} | {statistics.median(b):.0f} | {statistics.median(a):.0f} "
            f"| {x:.3f}× | {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {'–' if least is None else f'{least:.0%}'} | ≤ {goal:.2f}× "
            f"| {'yes' if ok else '**NO**'} |\n"
        )
        verdicts.append(
            f"{mine}, paired: {label} CPU/req {x:.3f}× {base}'s "
            f"(capacity {1 / x:.3f}×): {'meets' if ok else 'misses'} ≤ {goal:.2f}×."
        )
        if least is not None and least < SATURATED:
            verdicts.append(
                f"Warning: paired {label}: a server used only {least:.0%} of its core in "
                "a round; the load, not the server, may have been the bottleneck."
            )
    return table, verdicts
