"""The benchmarks' figures: grouped bars as an SVG, one panel per measure.

    from plot import Panel, write_svg
    write_svg(path, "title", [Panel("throughput", "requests/s", {"ails": {"non-stream": 812.0}})])

A panel holds one group of bars per target (``ails``, a peer, the pass-through
floor) and one bar per series in it (``p50``, ``p99``...); a missing or
``None`` value is left out, never drawn as 0. ``bench/gateway.py --svg`` and
``bench/stream_throughput.py --svg`` call this; nothing else draws.

matplotlib (pinned in the ``bench`` extra) is imported here only, with the
non-interactive Agg backend, and the SVG carries no date or random ids, so
two runs with the same numbers write the same file.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    #: target -> series -> value
    values: Mapping[str, Mapping[str, float | None]]
    #: Smaller is better (latency): said under the panel's title.
    lower_is_better: bool = False


def _series(panel: Panel) -> list[str]:
    names: dict[str, None] = {}
    for per_target in panel.values.values():
        for name, value in per_target.items():
            if value is not None:
                names[name] = None
    return list(names)


def _label(value: float) -> str:
    """A bar's number: whole thousands with separators, small ones to 3 digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def write_svg(path: Path | str, title: str, panels: Sequence[Panel], *, note: str = "") -> Path:
    """Draw ``panels`` side by side under ``title`` (and ``note`` below) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in panels if _series(p)]
    if not shown:
        raise ValueError("nothing to plot: every value is missing")
    plt.rcParams["svg.hashsalt"] = "ails-bench"  # stable ids: the same numbers, the same file
    plt.rcParams["svg.fonttype"] = "none"  # text stays text (searchable, small)
    # Room for every bar and its number: wider panels for more bars.
    widths = [max(5.2, 0.3 * len(p.values) * len(_series(p)) + 2) for p in shown]
    fig, axes = plt.subplots(
        1,
        len(shown),
        figsize=(sum(widths), 4.6),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": widths},
    )
    for ax, panel in zip(axes[0], shown, strict=True):
        targets = [t for t, per in panel.values.items() if any(v is not None for v in per.values())]
        series = _series(panel)
        width = 0.8 / len(series)
        for i, name in enumerate(series):
            xs, heights = [], []
            for j, target in enumerate(targets):
                value = panel.values[target].get(name)
                if value is not None:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    heights.append(value)
            bars = ax.bar(xs, heights, width, label=name)
            ax.bar_label(
                bars, fmt=_label, fontsize=7, padding=1, rotation=90 if len(series) > 2 else 0
            )
        ax.set_xticks(range(len(targets)), targets, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(panel.unit)
        better = "lower is better" if panel.lower_is_better else "higher is better"
        ax.set_title(f"{panel.title}\n({better})", fontsize=10)
        ax.margins(y=0.15)
        if len(series) > 1:
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(title, fontsize=10)
    if note:
        fig.supxlabel(textwrap.fill(note, int(12 * sum(widths))), fontsize=7)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


def gateway_panels(rows: Sequence[object], concurrency: int) -> list[Panel]:
    """bench/gateway.py's figures: its ``Row`` per target (``name``, ``rate``,
    ``stream``, ``p50``, ``p99``, ``cpu``)."""

    def get(row: object, name: str) -> float | None:
        value = getattr(row, name, None)
        return float(value) if isinstance(value, (int, float)) else None

    names = [str(getattr(r, "name", "?")) for r in rows]
    return [
        Panel(
            f"throughput, {concurrency} clients",
            "requests/s",
            {
                n: {"non-stream": get(r, "rate"), "10-chunk stream": get(r, "stream")}
                for n, r in zip(names, rows, strict=True)
            },
        ),
        Panel(
            "latency, one client, sequential",
            "ms",
            {
                n: {"p50": get(r, "p50"), "p99": get(r, "p99")}
                for n, r in zip(names, rows, strict=True)
            },
            lower_is_better=True,
        ),
    ]


def stream_panels(rates: Mapping[str, Mapping[str, Sequence[float]]]) -> list[Panel]:
    """bench/stream_throughput.py's figures: ``shape -> client -> chunks/s of each run``."""
    import statistics

    clients: dict[str, None] = {}
    for per_shape in rates.values():
        clients.update(dict.fromkeys(per_shape))
    throughput = {
        c: {
            shape: statistics.median(runs[c]) if c in runs else None
            for shape, runs in rates.items()
        }
        for c in clients
    }
    # The time a chunk takes, run by run: the median run and the slowest.
    latency: dict[str, dict[str, float | None]] = {}
    for c in clients:
        latency[c] = {}
        for shape, runs in rates.items():
            us = sorted(1e6 / r for r in runs.get(c, ()) if r > 0)
            latency[c][f"{shape} p50"] = statistics.median(us) if us else None
            latency[c][f"{shape} worst"] = us[-1] if us else None
    return [
        Panel("one stream, median of runs", "chunks/s", throughput),
        Panel("time per chunk, per run", "µs", latency, lower_is_better=True),
    ]


__all__ = ["Panel", "gateway_panels", "stream_panels", "write_svg"]
