"""Render the fault and hostile-input tables of docs/reliability.md from the
rows the tests run (tests/fault_matrix.py).

    python scripts/reliability_table.py           # print the tables
    python scripts/reliability_table.py --write   # put them into docs/reliability.md
    python scripts/reliability_table.py --check   # exit 1 if the doc differs

Each table sits between its BEGIN and END markers in the doc; the text around
them is written by hand. tests/test_reliability_doc.py runs the check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
sys.path.insert(0, str(ROOT / "tests"))

from fault_matrix import TABLES, begin_marker, end_marker  # noqa: E402


def render(doc: str) -> str:
    """``doc`` with every generated table replaced by its rendering now."""
    for name, table in TABLES.items():
        begin, end = begin_marker(name), end_marker(name)
        head, found, rest = doc.partition(begin)
        if not found or end not in rest:
            raise SystemExit(f"{DOC}: the markers of the {name} table are missing")
        _, _, tail = rest.partition(end)
        doc = f"{head}{begin}\n{table()}\n{end}{tail}"
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update docs/reliability.md")
    group.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for name, table in TABLES.items():
            print(f"{begin_marker(name)}\n{table()}\n{end_marker(name)}\n")
        return 0
    current = DOC.read_text(encoding="utf-8")
    fresh = render(current)
    if args.write:
        DOC.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != current:
        print(f"{DOC} is out of date: run python scripts/reliability_table.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
