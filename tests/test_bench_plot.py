"""bench/plot.py draws the benchmarks' figures: a valid SVG from a small result
set, with every target and series named, missing values left out, and the
same numbers giving the same file."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from plot import Panel, gateway_panels, stream_panels, write_svg

SVG = "{http://www.w3.org/2000/svg}"


def texts(path: Path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return " ".join(t.text or "" for t in root.iter(f"{SVG}text"))


def test_gateway_figures_name_every_target_and_series(tmp_path: Path) -> None:
    rows = [
        SimpleNamespace(name="ails", rate=812.0, stream=640.5, p50=0.91, p99=2.4),
        SimpleNamespace(name="pass-through", rate=950.0, stream=700.0, p50=0.7, p99=1.9),
        SimpleNamespace(name="litellm", rate=120.0, stream=None, p50=6.2, p99=15.0),
    ]
    out = write_svg(tmp_path / "g.svg", "bench/gateway.py", gateway_panels(rows, 64), note="a run")
    words = texts(out)
    for expected in ("ails", "pass-through", "litellm", "non-stream", "p99", "requests/s", "812"):
        assert expected in words, expected
    assert "a run" in words


def test_stream_figures_and_the_same_numbers_give_the_same_file(tmp_path: Path) -> None:
    rates = {
        "token": {"raw httpx": [9000.0, 9500.0, 9100.0], "ails": [20000.0, 21000.0, 19000.0]},
        "bulk": {"raw httpx": [30000.0, 31000.0, 29000.0], "ails": [90000.0, 88000.0, 91000.0]},
    }
    a = write_svg(tmp_path / "a.svg", "streams", stream_panels(rates))
    b = write_svg(tmp_path / "b.svg", "streams", stream_panels(rates))
    assert a.read_bytes() == b.read_bytes()
    words = texts(a)
    assert "chunks/s" in words and "token p50" in words and "bulk worst" in words


def test_nothing_to_draw_is_an_error(tmp_path: Path) -> None:
    empty = Panel("throughput", "requests/s", {"ails": {"non-stream": None}})
    with pytest.raises(ValueError, match="nothing to plot"):
        write_svg(tmp_path / "e.svg", "t", [empty])
    assert not (tmp_path / "e.svg").exists()
