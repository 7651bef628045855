"""bench/gateway.py's report: ``--only`` measures and lists the targets it
names (and ``direct``, the baseline), never the others as "no result"."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from gateway import Target, render, selected

ARGS: Any = SimpleNamespace(concurrency=64, seq_n=2)


def measured(name: str, ms: float, rps: float) -> Target:
    results = {"seq": {0: {"latencies_ms": [ms, ms]}}, "rate": {0: {"rps": rps}}}
    return Target(name, url="http://127.0.0.1:1", results=results)


def every_target() -> list[Target]:
    return [
        measured("direct", 1.0, 1000.0),
        measured("pass-through", 1.2, 900.0),
        measured("ails serve", 1.3, 850.0),
        Target("litellm", note="not installed"),
    ]


def rows(table: str) -> list[str]:
    return [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]


def test_only_keeps_the_named_targets_and_the_baseline() -> None:
    assert [t.name for t in selected(every_target(), "")] == [
        "direct", "pass-through", "ails serve", "litellm"
    ]  # fmt: skip
    assert [t.name for t in selected(every_target(), "ails serve")] == ["direct", "ails serve"]
    assert [t.name for t in selected(every_target(), " litellm ,pass-through")] == [
        "direct", "pass-through", "litellm"
    ]  # fmt: skip


def test_the_report_lists_only_what_ran() -> None:
    table, verdicts = render(selected(every_target(), "ails serve"), ARGS)
    names = rows(table)
    assert "direct" in names and "ails serve ◀" in names
    assert "pass-through" not in names and "litellm" not in names
    assert "no result" not in table
    assert verdicts == ["ails serve meets 0 of 4 targets."]  # no pass-through: n/a, not met


def test_ails_serve_left_out_is_said_not_run() -> None:
    table, verdicts = render(selected(every_target(), "pass-through"), ARGS)
    assert rows(table)[:2] == ["target", "direct"] and "pass-through" in rows(table)
    assert verdicts == ["ails serve: not run (not named by --only)."]
    # Named but without a result, it is said so.
    broken = [measured("direct", 1.0, 1000.0), Target("ails serve", note="did not start: x")]
    assert render(broken, ARGS)[1] == ["ails serve: not measured (did not start: x)."]


def test_paired_phase_reports_the_median_of_the_rounds_ratios_and_an_unsaturated_round() -> None:
    from gateway_paired import render as render_paired

    us = {
        "rate": {"ails serve": [110.0, 260.0, 130.0], "pass-through": [100.0, 200.0, 120.0]},
        "rate core": {"ails serve": [0.99, 0.98, 1.0], "pass-through": [1.0, 0.97, 0.99]},
        "stream": {"ails serve": [130.0, 125.0, 140.0], "pass-through": [100.0, 100.0, 100.0]},
        "stream core": {"ails serve": [0.99, 0.6, 1.0], "pass-through": [1.0, 1.0, 1.0]},
    }
    table, verdicts = render_paired(us, "ails serve", "pass-through", 1 / 0.85, 64)
    lines = {r.split("|")[1].strip(): r for r in table.splitlines() if r.startswith("| ")}
    # 1.10, 1.30, 1.08: the median of the ratios (1.10), not of the figures (130/120).
    assert "| 1.100× |" in lines["non-stream @64"] and "| 97% |" in lines["non-stream @64"]
    assert lines["non-stream @64"].endswith("| yes |")  # 1.10 <= 1/0.85
    assert "| 1.300× |" in lines["10-chunk stream @64"]
    assert lines["10-chunk stream @64"].endswith("| **NO** |")  # 1.30 > 1/0.85
    assert any(v.startswith("Warning: paired 10-chunk stream") and "60%" in v for v in verdicts)
    assert not any(v.startswith("Warning: paired non-stream") for v in verdicts)
    assert render_paired({}, "ails serve", "pass-through", 1.18, 64) == ("", [])


def test_dialect_paired_reports_each_dialect_against_chat_by_the_median_of_its_rounds() -> None:
    from dialect_paired import render as render_dialects

    figures = {
        "rate": {"chat": [100.0, 200.0, 100.0], "messages": [110.0, 300.0, 105.0],
                 "responses": [120.0, 240.0, 125.0]},
        "rate core": {"chat": [0.99] * 3, "messages": [0.98] * 3, "responses": [0.99] * 3},
        "stream": {"chat": [100.0] * 3, "messages": [130.0, 120.0, 125.0],
                   "responses": [110.0] * 3},
        "stream core": {"chat": [1.0] * 3, "messages": [1.0, 0.5, 1.0], "responses": [1.0] * 3},
    }  # fmt: skip
    table, verdicts = render_dialects(figures, 64)
    rows = [r for r in table.splitlines() if r.startswith("| ") and "/v1/" in r]
    by = {(r.split("|")[1].strip(), r.split("|")[3].strip()): r for r in rows}
    # messages non-stream: the rounds' ratios are 1.10, 1.50, 1.05, so the median is 1.10.
    assert "| 1.100× |" in by[("non-stream", "/v1/messages")]
    assert by[("non-stream", "/v1/messages")].endswith("| yes |")
    assert "| 1.200× |" in by[("non-stream", "/v1/responses")]
    assert by[("non-stream", "/v1/responses")].endswith("| **NO** |")
    assert "| 1.250× |" in by[("10-chunk stream", "/v1/messages")]
    assert "| 50% |" in by[("10-chunk stream", "/v1/messages")]
    assert any(v.startswith("Warning: 10-chunk stream /v1/messages") for v in verdicts)
    assert not any(v.startswith("Warning: non-stream") for v in verdicts)
    assert sum("meets" in v for v in verdicts) == 2  # messages non-stream, responses stream (1.10)
