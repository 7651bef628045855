"""How long ``import ails`` takes in a fresh interpreter (median of 15 runs).

.venv/bin/python bench/import_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys


def once(stmt: str) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    for stmt in ("import ails", "import ails; ails.Client", "import openai"):
        times = [once(stmt) for _ in range(15)]
        print(f"{stmt:32} median {statistics.median(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
