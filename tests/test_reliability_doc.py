"""docs/reliability.md says what the tests assert: its fault and hostile-input
tables are exactly the rendering of the rows tests/test_faults.py and
tests/test_hostile.py run (scripts/reliability_table.py --write refreshes them)."""

from __future__ import annotations

import sys
from pathlib import Path

from fault_matrix import TABLES, begin_marker, end_marker

ROOT = Path(__file__).resolve().parents[1]


def test_the_doc_holds_exactly_the_tables_the_tests_run() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    for name, table in TABLES.items():
        block = f"{begin_marker(name)}\n{table()}\n{end_marker(name)}"
        assert block in doc, (
            f"the {name} table of docs/reliability.md is stale: "
            f"run {sys.executable} scripts/reliability_table.py --write"
        )
