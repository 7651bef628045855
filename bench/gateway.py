"""The gateway against its peers, in one run, with ratios.

    .venv/bin/python bench/gateway.py [--peers] [--rounds 3] [--write docs/bench-gateway.md]
    .venv/bin/python bench/gateway.py --short    # under 3 minutes, no peers

Every server is its own process on 127.0.0.1: the fast mock upstream
(bench/mock_upstream.py), and in front of it the targets:

* ``direct`` — the load generator talks to the mock itself;
* ``pass-through`` — bench/passthrough_proxy.py, a minimal aiohttp proxy (bytes
  in, bytes out): the practical floor for a Python gateway;
* ``ails serve`` — the gateway under test, when ``ails serve`` exists;
* ``ails serve --no-metrics`` — the same without its Prometheus metrics, only
  with ``--metrics-ab``: what the metrics cost, as server CPU per request;
* ``litellm`` and ``g4f`` — the peers, only with ``--peers`` (installed on first
  use into bench/.peers/<name>/, which takes minutes); skipped with a note when
  they cannot be installed or started.

The load generator (bench/loadgen.py, aiohttp, a fresh process for each
measurement) measures per target:

1. sequential latency: ``--seq-n`` non-stream requests one at a time in all
   (split over the rounds, each share after a warm-up), p50/p99; "added" is the
   target's minus direct's;
2. non-stream requests/s with ``--concurrency`` clients, counted over
   ``--duration`` s after ``--warmup`` s;
3. the same for 10-chunk streams (``chunks:10``), each body read to ``[DONE]``;
4. per-chunk lag of a paced stream (``paced:20:50``: the upstream writes event
   i at start + i×50 ms, 22 events). With t_i the arrival of the i-th ``data:``
   line at the client and o_i = t_i − i×50 ms, a stream's lag is
   mean_i(o_i − min_j o_j): how late events arrive on average against the most
   punctual event of the same stream; the median over streams, through a
   target minus the same direct. It catches chunks held back, batched or
   delayed by work on the stream path; a constant delay on every chunk counts 0
   here and shows in "added p50" and in "first chunk +ms" (time to the first
   event, minus direct's) instead.

Tests 1-3 also run through ails serve's other dialects (``ails /v1/messages``,
``ails /v1/responses``: the same process, the same request translated), and a
second table compares them with its chat path: added p50, and server CPU per
request (the issue's targets: +0.3 ms, 1.15× at 64 clients). On a busy machine
bench/dialect_instructions.py counts instructions instead.

``--rounds`` rounds; in each, every test runs on every target back to back in
rotating order, so that on a busy machine a ratio compares figures taken
moments apart. Throughput is the median over rounds; a ratio is the median
over rounds of that round's ratio. Compare figures within one run only.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_paired
import peers as peers_mod
from _procs import (
    HERE,
    ROOT,
    Server,
    StartError,
    ails_gateway,
    ails_serve_available,
    cpu_seconds,
    mock_upstream_server,
    passthrough_proxy,
)

MODEL = "x"  # non-stream: the mock answers 10 tokens in one completion
STREAM_MODEL = "chunks:10"
PACE_MS = 50
PACED_MODEL = f"paced:20:{PACE_MS}"
#: ails serve runs with a client key, as a user runs it.
CLIENT_KEY = "bench-client-key-0123456789abcdef"

# The issue's targets for the ails row.
GOAL_RATE = 0.85  # × pass-through, non-stream at 64 clients (issue 11)
GOAL_STREAM = 0.85  # × pass-through, 10-chunk streams at 64 clients (issue 11)
GOAL_ADDED_P50_MS = 0.3  # over pass-through's added p50
GOAL_LAG_MS = 1.5
# The dialects over the chat path of the same gateway (issue 13).
GOAL_DIALECT_ADDED_P50_MS = 0.3  # sequential p50, over ails serve's chat p50
GOAL_DIALECT_CPU = 1.15  # server CPU per request at 64 clients, × the chat path's
#: The dialects measured through ails serve beside its chat path: target name -> dialect.
DIALECT_TARGETS = {"ails /v1/messages": "messages", "ails /v1/responses": "responses"}
DIALECT_TESTS = ("seq", "rate", "stream")
#: The metrics may cost at most this much CPU per request (issue 15).
GOAL_METRICS_CPU = 1.05
NO_METRICS = "ails serve --no-metrics"


TESTS = ("seq", "rate", "stream", "paced")


@dataclass
class Target:
    name: str
    url: str | None = None
    key: str | None = None
    pid: int | None = None  # the server whose CPU time is counted (direct: the mock)
    note: str = ""  # why it was not measured
    dialect: str = "chat"  # the API the load speaks (bench/loadgen.py --dialect)
    version: str = ""
    # test -> round -> the load generator's figures
    results: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def selected(targets: list[Target], only: str) -> list[Target]:
    """The targets a run measures and reports: every one, or those ``--only``
    names, with ``direct`` (the baseline of every "added" figure) always."""
    names = {s.strip() for s in only.split(",") if s.strip()}
    return [t for t in targets if not names or t.name in names or t.name == "direct"]


def run_loadgen(t: Target, test: str, args: argparse.Namespace) -> dict[str, Any]:
    """One test against one target, in a fresh load-generator process."""
    assert t.url is not None
    seq_n = -(-args.seq_n // args.rounds)  # per round; the rounds add up to --seq-n
    seq_max_s = args.seq_max_s / args.rounds
    cmd = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "--url",
        t.url,
        "--tests",
        test,
        "--model",
        MODEL,
        "--stream-model",
        STREAM_MODEL,
        "--paced-model",
        PACED_MODEL,
        "--paced-ms",
        str(PACE_MS),
        "--paced-streams",
        str(args.paced_streams),
        "--paced-max-s",
        str(args.paced_streams * 3 + 5),
        "--seq-n",
        str(seq_n),
        "--seq-warmup",
        str(args.seq_warmup),
        "--seq-max-s",
        str(seq_max_s),
        "--concurrency",
        str(args.concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    ]
    if t.key:
        cmd += ["--key", t.key]
    cmd += ["--loop", args.loop, "--dialect", t.dialect]
    if args.loadgen_cpu is not None:
        cmd += ["--cpu", str(args.loadgen_cpu)]
    limit = {
        "seq": seq_max_s + 30,
        "rate": args.warmup + args.duration + 45,
        "stream": args.warmup + args.duration + 45,
        "paced": args.paced_streams * 3 + 30,
    }[test]
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:  # subprocess.run kills the child
        return {"error": f"load generator killed after {limit:.0f} s"}
    if r.returncode != 0:
        return {"error": f"load generator exited {r.returncode}: {r.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(r.stdout)[test]
    return result


@dataclass
class Row:
    name: str
    seq_n: int = 0
    p50: float | None = None
    p99: float | None = None
    rate: float | None = None  # median over rounds
    stream: float | None = None
    lag: float | None = None  # raw, before subtracting direct's
    ttfb: float | None = None
    rate_by_round: dict[int, float] = field(default_factory=dict)
    stream_by_round: dict[int, float] = field(default_factory=dict)
    # the server's CPU µs per request (median over rounds), by test
    cpu: dict[str, float] = field(default_factory=dict)


def summarize(t: Target) -> Row:
    row = Row(t.name)
    lat = [x for r in t.results.get("seq", {}).values() for x in r.get("latencies_ms", [])]
    if lat:
        row.seq_n, row.p50, row.p99 = len(lat), statistics.median(lat), percentile(lat, 99)
    row.rate_by_round = {k: r["rps"] for k, r in t.results.get("rate", {}).items() if "rps" in r}
    row.stream_by_round = {
        k: r["rps"] for k, r in t.results.get("stream", {}).items() if "rps" in r
    }
    if row.rate_by_round:
        row.rate = statistics.median(row.rate_by_round.values())
    if row.stream_by_round:
        row.stream = statistics.median(row.stream_by_round.values())
    for test in ("seq", "rate", "stream"):
        us = [
            r["cpu_us_per_req"] for r in t.results.get(test, {}).values() if "cpu_us_per_req" in r
        ]
        if us:
            row.cpu[test] = statistics.median(us)
    paced = t.results.get("paced", {}).values()
    lags = [x for r in paced for x in r.get("lags_ms", [])]
    ttfbs = [r["ttfb_ms"] for r in paced if "ttfb_ms" in r]
    if lags:
        row.lag, row.ttfb = statistics.median(lags), statistics.median(ttfbs)
    return row


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))]


def round_ratio(a: dict[int, float], b: dict[int, float]) -> float | None:
    """Median over rounds of a/b, each round's pair measured moments apart."""
    ratios = [a[k] / b[k] for k in a.keys() & b.keys() if b[k]]
    return statistics.median(ratios) if ratios else None


def fmt(v: float | None, spec: str = ".2f", sign: bool = False) -> str:
    if v is None:
        return "–"
    return format(v, ("+" if sign else "") + spec)


def fx(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def render(targets: list[Target], args: argparse.Namespace) -> tuple[str, list[str]]:
    """The markdown tables, and the lines saying which of the issue's targets ails meets."""
    rows = {t.name: summarize(t) for t in targets if t.results}
    d = rows.get("direct", Row("direct"))
    p = rows.get("pass-through", Row("pass-through"))
    c = args.concurrency
    head = (
        f"| target | p50 ms | p99 ms | added p50 / p99 ms | non-stream req/s @{c} "
        f"| × pass-through | × direct | 10-chunk stream req/s @{c} | × pass-through | × direct "
        "| chunk lag ms | first chunk +ms | server CPU µs/req seq / @64 / stream |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    lines = []
    for t in targets:
        if t.name not in rows:
            note = (t.note or "no result").splitlines()[0].replace("|", "\\|")
            lines.append(f"| {t.name} | {note} |" + " |" * 11)
            continue
        r = rows[t.name]
        is_direct = t.name == "direct"
        added = (
            "–"
            if is_direct
            else f"{fmt(sub(r.p50, d.p50), sign=True)} / {fmt(sub(r.p99, d.p99), sign=True)}"
        )
        seq_note = f" (n={r.seq_n})" if r.seq_n < args.seq_n else ""
        lag = "–" if is_direct else fmt(sub(r.lag, d.lag), sign=True)
        ttfb = "–" if is_direct else fmt(sub(r.ttfb, d.ttfb), sign=True)
        name = t.name + (" ◀" if t.name == "ails serve" else "")
        lines.append(
            f"| {name} | {fmt(r.p50)}{seq_note} | {fmt(r.p99)} | {added} "
            f"| {fmt(r.rate, ',.0f')} | {fx(round_ratio(r.rate_by_round, p.rate_by_round))} "
            f"| {fx(round_ratio(r.rate_by_round, d.rate_by_round))} "
            f"| {fmt(r.stream, ',.0f')} "
            f"| {fx(round_ratio(r.stream_by_round, p.stream_by_round))} "
            f"| {fx(round_ratio(r.stream_by_round, d.stream_by_round))} | {lag} | {ttfb} "
            f"| {' / '.join(fmt(r.cpu.get(k), '.0f') for k in ('seq', 'rate', 'stream'))} |"
        )
    table = head + "\n".join(lines) + "\n"

    verdicts: list[str] = []
    a = rows.get("ails serve")
    if a is None:
        note = next((t.note for t in targets if t.name == "ails serve"), None)
        if note is None:
            verdicts.append("ails serve: not run (not named by --only).")
        else:
            verdicts.append(f"ails serve: not measured ({note or 'no result'}).")
        return table, verdicts
    goals: list[tuple[str, str, str, bool | None]] = []

    def goal_ratio(label: str, mine: dict[int, float], base: dict[int, float], k: float) -> None:
        x = round_ratio(mine, base)
        goals.append(
            (
                label,
                f"≥ {k:.2f}× pass-through",
                "–" if x is None else f"{x:.3f}×",
                None if x is None else x >= k,
            )
        )

    goal_ratio(f"non-stream req/s @{c}", a.rate_by_round, p.rate_by_round, GOAL_RATE)
    goal_ratio(f"10-chunk stream req/s @{c}", a.stream_by_round, p.stream_by_round, GOAL_STREAM)
    a_added, p_added = sub(a.p50, d.p50), sub(p.p50, d.p50)
    if a_added is None or p_added is None:
        goals.append(("added p50", f"≤ pass-through's + {GOAL_ADDED_P50_MS} ms", "–", None))
    else:
        lim = p_added + GOAL_ADDED_P50_MS
        goals.append(
            (
                "added p50",
                f"≤ pass-through's + {GOAL_ADDED_P50_MS} ms (≤ {lim:+.2f} ms)",
                f"{a_added:+.2f} ms",
                a_added <= lim,
            )
        )
    a_lag = sub(a.lag, d.lag)
    goals.append(
        (
            "per-chunk lag",
            f"≤ {GOAL_LAG_MS} ms",
            "–" if a_lag is None else f"{a_lag:+.2f} ms",
            None if a_lag is None else a_lag <= GOAL_LAG_MS,
        )
    )
    table += "\n| ails serve vs the issue's targets | goal | measured | met |\n"
    table += "|---|---|---|---|\n"
    for label, goal, got, ok in goals:
        mark = "n/a" if ok is None else ("yes" if ok else "**NO**")
        table += f"| {label} | {goal} | {got} | {mark} |\n"
    # Cross-check that a busy machine does not blur: a server bound by its one
    # core serves 1/(CPU per request); compare that capacity with pass-through's.
    # The ratio, as every other here, is the median of the rounds' ratios (each
    # pair measured moments apart), not the ratio of the two medians.
    pt = next((t for t in targets if t.name == "pass-through"), None)
    gw = next((t for t in targets if t.name == "ails serve"), None)
    for test, label, k in (("rate", "non-stream", GOAL_RATE), ("stream", "stream", GOAL_STREAM)):
        cpu_x = pt and gw and round_ratio(cpu_by_round(gw, test), cpu_by_round(pt, test))
        mine, base = a.cpu.get(test), p.cpu.get(test)
        if cpu_x and mine and base:
            x = 1 / cpu_x
            table += (
                f"| cross-check: {label} capacity by server CPU/req | ≥ {k:.2f}× pass-through "
                f"(CPU/req ≤ {1 / k:.2f}×) | {x:.3f}× ({cpu_x:.2f}× the CPU; medians "
                f"{mine:.0f} vs {base:.0f} µs) | {'yes' if x >= k else '**NO**'} |\n"
            )
    met = sum(1 for g in goals if g[3])
    verdicts.append(f"ails serve meets {met} of {len(goals)} targets.")
    bare = next((t for t in targets if t.name == NO_METRICS and t.results), None)
    mine = next((t for t in targets if t.name == "ails serve"), None)
    if bare is not None and mine is not None:
        table += metrics_cost(mine, bare)
    return table, verdicts


def by_round(t: Target, test: str, key: str) -> dict[int, float]:
    return {k: r[key] for k, r in t.results.get(test, {}).items() if key in r}


def render_dialects(targets: list[Target]) -> tuple[str, list[str]]:
    """The dialects against ails serve's own chat path: added p50 and server CPU
    per request (the figure a busy machine does not blur), with the issue's targets."""
    chat = next((t for t in targets if t.name == "ails serve" and t.results), None)
    dialects = [t for t in targets if t.dialect != "chat" and t.results]
    if chat is None or not dialects:
        return "", []
    base = summarize(chat)
    table = (
        "\n| dialect through ails serve | p50 ms | added p50 over chat ms "
        "| server CPU µs/req seq / @64 / stream | CPU/req × chat @64 non-stream / stream "
        "| req/s @64 non-stream / stream |\n|---|--:|--:|--:|--:|--:|\n"
    )
    rows = [(chat, base), *((t, summarize(t)) for t in dialects)]
    for t, r in rows:
        cpu = " / ".join(fmt(r.cpu.get(k), ".0f") for k in DIALECT_TESTS)
        if t is chat:
            added, ratios = "–", "1.00× / 1.00×"
        else:
            added = fmt(sub(r.p50, base.p50), sign=True)
            ratios = " / ".join(
                fx(round_ratio(by_round(t, test, "cpu_us_per_req"),
                               by_round(chat, test, "cpu_us_per_req")))
                for test in ("rate", "stream")
            )  # fmt: skip
        name = "chat (/v1/chat/completions)" if t is chat else t.name.removeprefix("ails ")
        table += (
            f"| {name} | {fmt(r.p50)} | {added} | {cpu} | {ratios} "
            f"| {fmt(r.rate, ',.0f')} / {fmt(r.stream, ',.0f')} |\n"
        )
    table += "\n| dialect vs the issue's targets | goal | measured | met |\n|---|---|---|---|\n"
    verdicts = []
    for t in dialects:
        r = summarize(t)
        goals: list[tuple[str, str, float | None, bool | None]] = []
        added = sub(r.p50, base.p50)
        goals.append(
            (
                "added p50, sequential",
                f"≤ {GOAL_DIALECT_ADDED_P50_MS} ms over chat",
                added,
                None if added is None else added <= GOAL_DIALECT_ADDED_P50_MS,
            )
        )
        for test, label in (("rate", "non-stream"), ("stream", "10-chunk stream")):
            x = round_ratio(
                by_round(t, test, "cpu_us_per_req"), by_round(chat, test, "cpu_us_per_req")
            )
            goals.append((f"server CPU/req @64, {label}", f"≤ {GOAL_DIALECT_CPU:.2f}× chat",
                          x, None if x is None else x <= GOAL_DIALECT_CPU))  # fmt: skip
        for label, goal, got, ok in goals:
            shown = "–" if got is None else (f"{got:+.2f} ms" if "p50" in label else f"{got:.3f}×")
            mark = "n/a" if ok is None else ("yes" if ok else "**NO**")
            table += f"| {t.name.removeprefix('ails ')}: {label} | {goal} | {shown} | {mark} |\n"
        met = sum(1 for g in goals if g[3])
        verdicts.append(f"{t.name}: meets {met} of {len(goals)} dialect targets.")
    return table, verdicts


def cpu_by_round(t: Target, test: str) -> dict[int, float]:
    return {
        k: r["cpu_us_per_req"]
        for k, r in t.results.get(test, {}).items()
        if r.get("cpu_us_per_req")
    }


def metrics_cost(mine: Target, bare: Target) -> str:
    """Server CPU per request with the metrics over without: the median over
    rounds of each round's ratio (the two measured back to back)."""
    out = (
        "\n| what the metrics cost: server CPU µs/req | with | without | with / without "
        f"(median of rounds) | goal ≤ {GOAL_METRICS_CPU:.2f}× |\n|---|--:|--:|--:|---|\n"
    )
    for test, label in (("seq", "sequential"), ("rate", "non-stream @64"), ("stream", "stream")):
        a, b = cpu_by_round(mine, test), cpu_by_round(bare, test)
        x = round_ratio(a, b)
        if x is None:
            continue
        ok = "yes" if x <= GOAL_METRICS_CPU else "**NO**"
        with_us, without_us = statistics.median(a.values()), statistics.median(b.values())
        out += (
            f"| {label} | {with_us:.0f} | {without_us:.0f} "
            f"| {x:.3f}× ({len(a.keys() & b.keys())} rounds) | {ok} |\n"
        )
    return out


def versions(targets: list[Target]) -> str:
    def ver(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    parts = [f"python {platform.python_version()}", f"aiohttp {ver('aiohttp')}"]
    parts.append(f"ails {ver('ails')}")
    parts += [f"{t.name} {t.version}" for t in targets if t.version and t.results]
    return ", ".join(parts)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {cpu}, {platform.system()} {platform.release()}"


def git_rev() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    rev = r.stdout.strip() or "?"
    try:
        st = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return rev
    return rev + (" + uncommitted changes in src/" if st.stdout.strip() else "")


def setup_targets(
    stack: ExitStack,
    mock: Server,
    args: argparse.Namespace,
    install_errors: dict[str, str],
    say: Callable[[str], None],
) -> list[Target]:
    upstream = mock.url
    # Every target gets the same request bytes, the client key included (the
    # mock and the proxy ignore it; ails serve checks it, as a user runs it).
    targets = [Target("direct", upstream, key=CLIENT_KEY, pid=mock.pid)]
    pt = stack.enter_context(passthrough_proxy(upstream, loop=args.loop))
    targets.append(Target("pass-through", pt.url, key=CLIENT_KEY, pid=pt.pid))

    ails = Target("ails serve")
    why = ails_serve_available()
    if why is not None:
        ails.note = f"not available: {why}"
    else:
        try:
            gw = stack.enter_context(
                ails_gateway(upstream, HERE / ".peers" / "ails.log", key=CLIENT_KEY, loop=args.loop)
            )
            ails.url, ails.pid, ails.key = gw.url, gw.pid, CLIENT_KEY
        except StartError as e:
            ails.note = f"did not start: {e}"
    targets.append(ails)
    # The same gateway process, spoken to in the other dialects: the same load,
    # so the difference is the translation (its CPU counted on the same pid).
    for name, dialect in DIALECT_TARGETS.items():
        targets.append(
            Target(name, ails.url, key=ails.key, pid=ails.pid, note=ails.note, dialect=dialect)
        )
    if args.metrics_ab:
        bare = Target(NO_METRICS)
        if ails.note:
            bare.note = ails.note
        else:
            try:
                gw = stack.enter_context(
                    ails_gateway(
                        upstream,
                        HERE / ".peers" / "ails-no-metrics.log",
                        key=CLIENT_KEY,
                        loop=args.loop,
                        extra=["--no-metrics"],
                    )
                )
                bare.url, bare.pid, bare.key = gw.url, gw.pid, CLIENT_KEY
            except StartError as e:
                bare.note = f"did not start: {e}"
        targets.append(bare)

    models = [MODEL, STREAM_MODEL, PACED_MODEL]
    starters: dict[str, Callable[[], Any]] = {
        "litellm": lambda: peers_mod.litellm(upstream, models),
        "g4f": lambda: peers_mod.g4f(upstream),
    }
    for name, start in starters.items():
        t = Target(name)
        targets.append(t)
        if not args.peers:
            t.note = "skipped (pass --peers to install and run it)"
            continue
        if name in install_errors:
            t.note = f"install failed: {install_errors[name]}"
            continue
        say(f"starting {name} ...")
        try:
            peer = stack.enter_context(start())
        except (peers_mod.PeerError, StartError) as e:
            t.note = f"did not start: {e}"
            continue
        t.url, t.key, t.version, t.pid = peer.url, peer.key, peer.version, peer.pid
    return targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", action="store_true", help="install (once) and run LiteLLM, g4f")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq-n", type=int, default=2000, help="sequential requests, all rounds")
    ap.add_argument("--seq-warmup", type=int, default=50, help="warm-up requests per round")
    ap.add_argument(
        "--seq-max-s", type=float, default=60.0, help="time cap, all rounds (slow peers)"
    )
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=2.5, help="seconds measured per round")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per round")
    ap.add_argument("--paced-streams", type=int, default=2, help="paced streams per round")
    ap.add_argument("--tests", default="seq,rate,stream,paced", help=argparse.SUPPRESS)
    ap.add_argument(
        "--only", default="", help="comma-separated target names to measure and report (and direct)"
    )
    ap.add_argument("--write", type=Path, help="also write the results to this markdown file")
    ap.add_argument("--json", type=Path, help="dump every round's raw figures here")
    ap.add_argument("--svg", type=Path, help="also draw the results into this SVG (bench/plot.py)")
    ap.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the event loop of every server and the load generator (ails serve's default: uvloop)",
    )
    ap.add_argument(
        "--loadgen-cpu", type=int, default=None, help="pin the load generator to this core"
    )
    ap.add_argument(
        "--paired-rounds",
        type=int,
        default=5,
        help="rounds of the paired phase (ails serve and pass-through by CPU per request, "
        "alternating turns on one pinned core; bench/gateway_paired.py); 0: none",
    )
    ap.add_argument(
        "--short",
        action="store_true",
        help="the quick run (under 3 minutes): 3 rounds, 600 sequential requests, "
        "2 s counted per throughput test, 1 paced stream a round, no peers",
    )
    ap.add_argument(
        "--metrics-ab",
        action="store_true",
        help="also run ails serve --no-metrics: the metrics' CPU per request (issue 15)",
    )
    args = ap.parse_args()
    if args.short:
        args.rounds, args.seq_n, args.duration, args.paced_streams = 3, 600, 2.0, 1
        args.paired_rounds = min(args.paired_rounds, 3)
        args.peers = False

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    load_before = os.getloadavg()
    install_errors: dict[str, str] = {}
    if args.peers:
        for name in peers_mod.SPECS:
            try:
                say(f"{name} {peers_mod.install(name, say)} ready")
            except peers_mod.PeerError as e:
                install_errors[name] = str(e)
                say(f"{name}: install failed: {e}")

    with ExitStack() as stack:
        mock = stack.enter_context(
            mock_upstream_server([MODEL, STREAM_MODEL, PACED_MODEL], loop=args.loop)
        )
        # What --only leaves out is neither measured nor reported.
        targets = selected(setup_targets(stack, mock, args, install_errors, say), args.only)
        live = [t for t in targets if t.url]
        for t in targets:
            if t.note:
                say(f"{t.name}: {t.note}")
        tests = [x for x in args.tests.split(",") if x]
        for rnd in range(args.rounds):
            # Each test runs on every target back to back (rotating who goes
            # first), so a ratio compares figures taken moments apart.
            for test in tests:
                k = (rnd + tests.index(test)) % len(live)
                for t in live[k:] + live[:k]:
                    if t.dialect != "chat" and test not in DIALECT_TESTS:
                        continue
                    say(f"round {rnd + 1}/{args.rounds} {test}: {t.name}")
                    cpu0 = cpu_seconds(t.pid) if t.pid else None
                    res = run_loadgen(t, test, args)
                    if cpu0 is not None and t.pid and res.get("total"):
                        res["cpu_us_per_req"] = (cpu_seconds(t.pid) - cpu0) / res["total"] * 1e6
                    if res.get("errors") or "error" in res:
                        msg = f"round {rnd + 1} {test}: {res.get('errors', 0)} errors"
                        msg += f" {res.get('error', '')}".rstrip()
                        t.errors.append(msg)
                        say(f"  {t.name}: {msg}")
                    if "error" not in res or res.get("n"):
                        t.results.setdefault(test, {})[rnd] = res
        for t in targets:
            if t.url and not t.results and not t.note:
                t.note = "no result: " + ("; ".join(t.errors)[:300] or "?")
        pair = {t.name: t for t in live if t.name in ("pass-through", "ails serve") and t.pid}
        paired: dict[str, dict[str, list[float]]] = {}
        if args.paired_rounds and len(pair) == 2:
            paired = gateway_paired.measure(
                {n: (t.pid, t.url) for n, t in pair.items() if t.pid and t.url},
                mock.pid,
                CLIENT_KEY,
                args.paired_rounds,
                args.concurrency,
                args.loop,
                say,
            )

    table, verdicts = render(targets, args)
    paired_table, paired_verdicts = gateway_paired.render(
        paired, "ails serve", "pass-through", 1 / GOAL_RATE, args.concurrency
    )
    table += paired_table
    verdicts += paired_verdicts
    dialect_table, dialect_verdicts = render_dialects(targets)
    table += dialect_table
    verdicts += dialect_verdicts
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 2) * 0.75:
        verdicts.append(
            f"Warning: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
            "(this run adds about 1.5): other processes competed for the CPUs; "
            "figures are noisier than usual."
        )
    notes = [f"- {t.name}: {t.note}".replace("\n", "\n  ") for t in targets if t.note]
    notes += [f"- {t.name}: {e[:300]}" for t in targets for e in t.errors[:3]]
    header = (
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}; "
        f"{versions(targets)}; commit {git_rev()}; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after; {args.rounds} rounds, medians; {elapsed:.0f} s"
    )
    print()
    print(header)
    print()
    print(table)
    for v in verdicts:
        print(v)
    if notes:
        print("\nNotes:\n" + "\n".join(notes))

    if args.json:
        raw: dict[str, Any] = {
            t.name: {"results": t.results, "note": t.note, "errors": t.errors} for t in targets
        }
        raw["paired"] = paired
        args.json.write_text(json.dumps(raw, indent=1))
    if args.write:
        write_doc(args.write, header, table, verdicts, notes, args)
    if args.svg:
        from plot import gateway_panels, write_svg

        rows = [summarize(t) for t in targets if t.results]
        write_svg(args.svg, "bench/gateway.py", gateway_panels(rows, args.concurrency), note=header)
    return 0


def method(args: argparse.Namespace) -> str:
    """The paragraph that says how the figures were taken."""
    r = args.rounds
    text = f"""\
Every server is its own process on 127.0.0.1 in front of the fast mock upstream
(bench/mock_upstream.py), every server and the load generator on the same event loop
({args.loop}); the load generator (bench/loadgen.py, keep-alive HTTP/1.1 on raw asyncio
streams{", pinned to core " + str(args.loadgen_cpu) if args.loadgen_cpu is not None else ""})
is a fresh process for each measurement and costs far less per request than any server
measured, so "direct" runs far above the targets. ails serve runs as a user runs it:
with a client key (sent to every target) and its access log on. {r} rounds; in each,
every test runs on every target back to back, in rotating order. Latency:
{args.seq_n} non-stream requests one at a time in all (each round's share after
{args.seq_warmup} warm-up ones; at most
{args.seq_max_s:.0f} s in all), p50/p99 of them all; added = target minus direct.
Throughput: {args.concurrency} concurrent clients, {args.duration:g} s counted after
{args.warmup:g} s of warm-up, non-stream (`{MODEL}`) and 10-chunk streams
(`{STREAM_MODEL}`, each body read to `[DONE]`): the median over rounds, and ratios as the
median over rounds of that round's ratio. Chunk lag: stream `{PACED_MODEL}` (the
upstream writes event i at start + i×{PACE_MS} ms), {args.paced_streams} a round; with t_i
the arrival of event i at the client and o_i = t_i − i×{PACE_MS} ms, a stream's lag is
mean_i(o_i − min_j o_j) (a constant delay counts 0; a chunk held back counts its delay);
the median over streams, through the target minus direct. "first chunk +ms": median
time to the first event, minus direct's. "server CPU µs/req": user + system CPU time of
the target's process group (direct: the mock's) over each measurement, divided by the
requests it completed there (warm-up included). On 2 cores the load generator and the mock
share the CPUs with the target, so a throughput ratio understates a gateway's own cost;
the cross-check compares capacities by CPU per request instead. The dialect rows
("ails /v1/messages", "ails /v1/responses") are the same ails serve process, sent the
same one-message request in Anthropic's Messages and OpenAI's Responses API (`store:
false`, as Codex sends it) in the same rounds, for latency, non-stream and stream; the
dialect table compares them with its chat path: added p50 and server CPU per request,
the median over rounds of each round's ratio. Paired phase ({args.paired_rounds} rounds after
a warm-up one, bench/gateway_paired.py): ails serve and pass-through on one pinned core,
the mock and the load on the others, in alternating 0.25 s turns of {args.concurrency}
connections until each used 3 s of CPU; a loaded server runs its core at ~100 %, so
capacity is 1 / (CPU per request); the median of the rounds' ratios. Compare figures
within one run only."""
    return textwrap.fill(" ".join(text.split()), 88, break_on_hyphens=False)


def write_doc(
    path: Path,
    header: str,
    table: str,
    verdicts: list[str],
    notes: list[str],
    args: argparse.Namespace,
) -> None:
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = f"""# Gateway benchmark

Written by `.venv/bin/python bench/gateway.py {argv}`.

{header}

{method(args)}

{table}
{chr(10).join(verdicts)}
"""
    if notes:
        text += "\nNotes:\n\n" + "\n".join(notes) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
