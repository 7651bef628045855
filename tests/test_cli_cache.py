"""``ails cache``: the embedded model's cache folder, what is in it, and
``--clear``; the next answer of the embedded model joins the parts again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ails.local.weights import EXPECTED_SIZE, MODEL_FILENAME
from cli_helpers import clean_env, run

STAMP = f"{MODEL_FILENAME}.verified"
TEMP = f".{MODEL_FILENAME}.k3j2x9.tmp"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = clean_env(tmp_path / "home", None)
    env["AILS_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def fill(cache: Path) -> None:
    """What a join leaves (a model, its stamp), a killed join's temp file, and
    a file that is not ours."""
    cache.mkdir()
    (cache / MODEL_FILENAME).write_bytes(b"G" * 3000)
    (cache / STAMP).write_text("{}")
    (cache / TEMP).write_bytes(b"t" * 10)
    (cache / "notes.txt").write_text("mine")


def test_an_empty_cache(env: dict[str, str]) -> None:
    result = run(env, "cache")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == env["AILS_CACHE_DIR"]
    assert "(empty" in lines[1] and lines[-1] == "total: 0 B"
    data = json.loads(run(env, "cache", "--json").stdout)
    assert data == {"path": env["AILS_CACHE_DIR"], "exists": False, "files": [], "bytes": 0}
    cleared = run(env, "cache", "--clear")
    assert cleared.returncode == 0 and "Nothing to remove" in cleared.stderr


def test_contents_sizes_and_clear(env: dict[str, str]) -> None:
    cache = Path(env["AILS_CACHE_DIR"])
    fill(cache)
    shown = run(env, "cache")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[2]: line for line in shown.stdout.splitlines()[1:-1]}
    assert "3.0 kB" in rows[MODEL_FILENAME] and "the embedded model" in rows[MODEL_FILENAME]
    assert (
        "sha256" in rows[STAMP]
        and "killed" in rows[TEMP]
        and "not made by ails" in rows["notes.txt"]
    )
    assert shown.stdout.splitlines()[-1] == "total: 3.0 kB"  # 3000 + 2 + 10 + 4 bytes
    data = json.loads(run(env, "cache", "--json").stdout)
    assert data["bytes"] == 3016 and data["exists"] is True
    assert [(f["name"], f["kind"]) for f in data["files"]] == [
        (MODEL_FILENAME, "model"),
        (STAMP, "stamp"),
        (TEMP, "temp"),
        ("notes.txt", "other"),
    ]

    cleared = json.loads(run(env, "cache", "--clear", "--json").stdout)
    assert sorted(f["name"] for f in cleared["removed"]) == sorted([MODEL_FILENAME, STAMP, TEMP])
    assert cleared["freed_bytes"] == 3012
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]  # not ours: kept
    again = run(env, "cache", "--clear")
    assert again.returncode == 0 and "Nothing to remove" in again.stderr


def test_clear_says_what_it_removed(env: dict[str, str]) -> None:
    cache = Path(env["AILS_CACHE_DIR"])
    fill(cache)
    result = run(env, "cache", "--clear")
    assert result.returncode == 0, result.stderr
    assert f"removed {cache / MODEL_FILENAME}" in result.stdout.splitlines()
    assert "Freed 3.0 kB" in result.stderr and "joins the installed parts again" in result.stderr


def test_an_unreadable_cache_is_one_line(env: dict[str, str]) -> None:
    Path(env["AILS_CACHE_DIR"]).write_text("a file where the folder should be")
    result = run(env, "cache")
    assert result.returncode == 1
    assert (
        result.stderr.startswith("ails: error: cannot read ") and "Traceback" not in result.stderr
    )


@pytest.mark.local
def test_the_next_answer_rebuilds_a_cleared_cache(env: dict[str, str]) -> None:
    first = run(env, "-n", "-o", "max_tokens=4", "Say hi.", timeout=180)
    assert first.returncode == 0, first.stderr
    assert "ails: joining model parts into" in first.stderr
    model = json.loads(run(env, "cache", "--json").stdout)["files"][0]
    assert (model["name"], model["bytes"]) == (MODEL_FILENAME, EXPECTED_SIZE)
    assert run(env, "cache", "--clear").returncode == 0
    assert not (Path(env["AILS_CACHE_DIR"]) / MODEL_FILENAME).exists()
    second = run(env, "-n", "-o", "max_tokens=4", "Say hi.", timeout=180)
    assert second.returncode == 0, second.stderr
    assert "ails: joining model parts into" in second.stderr and second.stdout.strip()
    kinds = [f["kind"] for f in json.loads(run(env, "cache", "--json").stdout)["files"]]
    assert kinds == ["model", "stamp"]
