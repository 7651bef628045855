"""Instructions per request of ``ails serve`` in each dialect, under callgrind.

    .venv/bin/python bench/dialect_instructions.py [--concurrency 64] [--duration 6]

Wall-clock and even CPU-time figures drift on a busy shared machine; the
number of instructions the gateway executes per request does not. This runs
``ails serve`` under ``valgrind --tool=callgrind`` in front of the mock
upstream, and for each load (non-stream, 10-chunk stream) and each dialect
(``/v1/chat/completions``, ``/v1/messages``, ``/v1/responses``): a warm-up
run of bench/loadgen.py, counters zeroed (``callgrind_control -z``), a
measured run, counters dumped; instructions over the requests completed.
User-space instructions only (the kernel's share of a request is not
counted, so ratios are a little higher than CPU-time ratios would be).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import HERE, ails_executable, free_port, mock_upstream_server, spawn, stop, wait_http

KEY = "bench-client-key-0123456789abcdef"
DIALECTS = ("chat", "messages", "responses")
LOADS = {"rate": "non-stream", "stream": "10-chunk stream"}


def loadgen(url: str, test: str, dialect: str, args: argparse.Namespace, duration: float) -> int:
    """Requests completed by one load-generator run (every one must succeed)."""
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--key", KEY,
           "--tests", test, "--dialect", dialect, "--model", "x", "--stream-model", "chunks:10",
           "--concurrency", str(args.concurrency), "--duration", str(duration),
           "--warmup", "0"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=True)
    result = json.loads(out.stdout)[test]
    if result.get("errors"):
        raise SystemExit(f"{dialect} {test}: {result['errors']} errors: {result.get('error')}")
    return int(result["total"])


def dumped(folder: Path, before: set[Path]) -> int:
    """Total instructions of the dump that appears in ``folder``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(folder.glob("cg.out.*")) - before
        if new:
            time.sleep(1)  # written at once, but give it a moment
            for line in next(iter(new)).read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise SystemExit("callgrind wrote no dump")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per measured run")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, mock_upstream_server(["x", "chunks:10"]) as mock:
        folder = Path(tmp)
        port = free_port()
        serve = [str(ails_executable()), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--upstream", mock.url, "--api-key", KEY]  # fmt: skip
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.out",
               "--dump-instr=no", *serve]  # fmt: skip
        proc = spawn(cmd, log=folder / "serve.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/health", proc, 300, folder / "serve.log")
            url = f"http://127.0.0.1:{port}/v1"
            for test in LOADS:
                for dialect in DIALECTS:
                    loadgen(url, test, dialect, args, 2.0)  # warm-up, not counted
                    subprocess.run(["callgrind_control", "-z", str(proc.pid)],
                                   capture_output=True, check=True)  # fmt: skip
                    n = loadgen(url, test, dialect, args, args.duration)
                    before = set(folder.glob("cg.out.*"))
                    subprocess.run(["callgrind_control", "-d", str(proc.pid)],
                                   capture_output=True, check=True)  # fmt: skip
                    per = dumped(folder, before) / n
                    results.setdefault(test, {})[dialect] = per
                    print(f"{LOADS[test]} {dialect}: {per:,.0f} instructions/request (n={n})",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            stop(proc, timeout=60)
    print(f"\n| instructions per request @{args.concurrency} | "
          + " | ".join(DIALECTS) + " | messages × chat | responses × chat |")  # fmt: skip
    print("|---|" + "--:|" * (len(DIALECTS) + 2))
    for test, row in results.items():
        cells = " | ".join(f"{row[d]:,.0f}" for d in DIALECTS)
        ratios = " | ".join(f"{row[d] / row['chat']:.2f}×" for d in DIALECTS[1:])
        print(f"| {LOADS[test]} | {cells} | {ratios} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
