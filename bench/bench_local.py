"""Embedded model: ails against raw xllamacpp, in one run, same prompt and settings.

    .venv/bin/python bench/bench_local.py            # the table (medians of 5)
    .venv/bin/python bench/bench_local.py --threads-scan   # decode speed per thread count

(a) raw: xllamacpp's own ``Server`` built here with the same parameters ails uses,
    ``handle_chat_completions`` streaming, timed inside its callback;
(b) ails: ``LocalProvider.connect`` with the model already loaded, timed where an
    asyncio consumer sees each batch (so the thread hop to the loop is included);
(c) cold start: a fresh ``ails prompt`` process (or, without the CLI, ``python -c``
    running the library) from process start to the first byte of the answer.

(a) and (b) live in this one process, each with its own copy of the model
(~620 MB each), and run alternately so both see the same machine state. Both
keep the runtime's prompt cache on (its default), so after the first round the
time to first token is mostly one decoding step plus our overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before xllamacpp loads, as ails does

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ails.local import runtime as rt  # noqa: E402
from ails.providers.local import LocalProvider  # noqa: E402

PROMPT = "Write a haiku about the sea."
MESSAGES = [{"role": "user", "content": PROMPT}]
MAX_TOKENS = 64
SEED = 1
#: Answers per median; ``--rounds`` changes it.
ROUNDS = [5]


def raw_server(threads: int, n_ctx: int, parallel: int) -> Any:
    import xllamacpp

    from ails.local.weights import bundled_model

    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model())
    params.n_ctx = n_ctx * parallel
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    params.fit_params = False
    params.cache_ram_mib = rt.PROMPT_CACHE_MIB
    socket_dir = tempfile.mkdtemp(prefix="bench-")
    params.hostnames = [os.path.join(socket_dir, "l.sock")]  # no TCP port, as ails does
    params.api_keys = ["bench"]
    params.ui = False
    try:
        return xllamacpp.Server(params)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def raw_once(server: Any, messages: list[dict[str, str]] = MESSAGES) -> tuple[float, float, int]:
    """(ttft s, tokens/s, content chunks) for one streamed answer."""
    request = {
        "messages": messages,
        "stream": True,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "seed": SEED,
        "stream_options": {"include_usage": True},
    }
    stamps: list[float] = []

    def on_chunk(chunk: Any) -> bool:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if choices and choices[0].get("delta", {}).get("content"):
            stamps.append(time.perf_counter())
        return False

    started = time.perf_counter()
    server.handle_chat_completions(request, on_chunk)
    return _rates(started, stamps)


async def ails_once(
    provider: LocalProvider, messages: list[dict[str, str]] = MESSAGES
) -> tuple[float, float, int]:
    stamps: list[float] = []
    started = time.perf_counter()
    stream = await provider.connect(
        "default", messages, max_tokens=MAX_TOKENS, temperature=0, seed=SEED
    )
    try:
        async for batch in stream:
            now = time.perf_counter()
            for chunk in batch:
                if chunk.choices and chunk.choices[0].delta.content:
                    stamps.append(now)
    finally:
        await stream.aclose()
    return _rates(started, stamps)


def _rates(started: float, stamps: list[float]) -> tuple[float, float, int]:
    ttft = stamps[0] - started
    tps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return ttft, tps, len(stamps)


async def cancel_latency(provider: LocalProvider) -> float:
    """aclose after the first token -> the generation thread has left the runtime.

    Read up to a content chunk: the role chunk comes in the same runtime step as
    the first token, and stopping between the two costs nothing (0 ms)."""
    stream = await provider.connect("default", MESSAGES, max_tokens=256, temperature=0)
    while not any(c.choices and c.choices[0].delta.content for c in await stream.__anext__()):
        pass
    started = time.perf_counter()
    await stream.aclose()
    await stream.wait_closed(timeout=5)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def cold_start() -> list[tuple[str, float]]:
    """Process start to the first byte of the answer on stdout: the CLI and the library."""
    cli = str(ROOT / ".venv" / "bin" / "ails")
    # The CLI's flags are still moving: the first spelling that answers wins.
    cli_cmds = [
        [
            cli,
            "prompt",
            "-n",
            *("-o", f"max_tokens={MAX_TOKENS}", "-o", "temperature=0"),
            *("-o", f"seed={SEED}", PROMPT),
        ],
        [cli, "prompt", "--max-tokens", str(MAX_TOKENS), "--temperature", "0", PROMPT],
        [cli, PROMPT],
    ]
    lib_code = (
        "import asyncio, sys\n"
        "from ails.providers.local import LocalProvider\n"
        "async def main():\n"
        "    s = await LocalProvider().connect('default', "
        f"{MESSAGES!r}, max_tokens={MAX_TOKENS}, temperature=0, seed={SEED})\n"
        "    async for b in s:\n"
        "        for c in b:\n"
        "            if c.choices and c.choices[0].delta.content:\n"
        "                sys.stdout.write(c.choices[0].delta.content); sys.stdout.flush()\n"
        "asyncio.run(main())\n"
    )
    lib_cmd = [sys.executable, "-c", lib_code]
    runs = [("(c) `python -c` library, cold process", lib_cmd)]
    if os.path.exists(cli):
        for candidate in cli_cmds:
            if _first_byte(candidate) is not None:
                runs.insert(
                    0, (f"(c) CLI `ails {' '.join(candidate[1:-1])} PROMPT`, cold", candidate)
                )
                break
        else:
            runs.insert(0, ("(c) CLI: did not run (see its --help)", []))
    rows = []
    for label, cmd in runs:
        tries = (_first_byte(cmd) for _ in range(ROUNDS[0] if cmd else 0))
        times = [t for t in tries if t is not None]
        rows.append((label, statistics.median(times) if times else float("nan")))
    return rows


def _first_byte(cmd: list[str]) -> float | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    elapsed = time.perf_counter() - started
    proc.stdout.read()
    ok = proc.wait(timeout=120) == 0 and bool(first)
    return elapsed if ok else None


async def table(threads: int) -> None:
    settings = rt.Settings(threads=threads).resolved()
    assert settings.n_ctx and settings.parallel
    started = time.perf_counter()
    runtime = rt.get_runtime(settings, progress=lambda m: None)
    load_ails = time.perf_counter() - started
    started = time.perf_counter()
    server = raw_server(threads, settings.n_ctx, settings.parallel)
    load_raw = time.perf_counter() - started
    provider = LocalProvider(threads=threads)

    raw_once(server)  # warm both: first runs fill caches and page in the weights
    await ails_once(provider)
    raw: list[tuple[float, float, int]] = []
    lib: list[tuple[float, float, int]] = []
    for _ in range(ROUNDS[0]):
        raw.append(raw_once(server))
        lib.append(await ails_once(provider))
    cancels = [await cancel_latency(provider) for _ in range(ROUNDS[0])]
    story = [{"role": "user", "content": "Tell a long story about a dragon who learns to cook."}]
    other = [{"role": "user", "content": "Explain in detail how a bicycle stays upright."}]
    alone: list[float] = []
    pairs: list[list[tuple[float, float, int]]] = []
    for _ in range(3):  # interleaved, like (a) and (b)
        alone.append((await ails_once(provider, story))[1])
        pairs.append(
            list(await asyncio.gather(ails_once(provider, story), ails_once(provider, other)))
        )
    colds = cold_start()

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    raw_ttft, raw_tps = med(raw, 0), med(raw, 1)
    lib_ttft, lib_tps = med(lib, 0), med(lib, 1)
    print(
        f"\n{os.cpu_count()} cores, threads={threads}, n_ctx={settings.n_ctx}/request, "
        f"parallel={settings.parallel}, max_tokens={MAX_TOKENS}, temperature 0, seed {SEED}, "
        f"medians of {ROUNDS[0]}; {int(med(lib, 2))} content chunks per answer\n"
    )
    print("| path | tokens/s | time to first token | vs raw |")
    print("| --- | ---: | ---: | --- |")
    print(f"| (a) raw xllamacpp | {raw_tps:.1f} | {raw_ttft * 1000:.0f} ms | 1.00 |")
    print(
        f"| (b) ails LocalProvider | {lib_tps:.1f} | {lib_ttft * 1000:.0f} ms | "
        f"tokens/s {lib_tps / raw_tps:.3f}x, TTFT {(lib_ttft - raw_ttft) * 1000:+.1f} ms |"
    )
    for label, cold in colds:
        print(f"| {label} | | {cold * 1000:.0f} ms | |")
    print(
        f"\nload (weights verified by stamp, model already in page cache): ails "
        f"{runtime.load_seconds:.2f} s (get_runtime {load_ails:.2f} s), raw {load_raw:.2f} s"
    )
    print(
        f"cancellation (aclose -> thread out of the runtime): median "
        f"{statistics.median(cancels) * 1000:.0f} ms, max {max(cancels) * 1000:.0f} ms"
    )
    per_stream = statistics.median(r[1] for pair in pairs for r in pair)
    print(
        f"concurrency (64-token answers): one stream {statistics.median(alone):.1f} tokens/s; "
        f"two at once {per_stream:.1f} tokens/s each, {2 * per_stream:.1f} together"
    )
    ok_tps = lib_tps >= 0.95 * raw_tps
    ok_ttft = lib_ttft - raw_ttft <= 0.020
    print(f"targets: tokens/s within 5%: {ok_tps}; TTFT within 20 ms: {ok_ttft}")


def threads_scan() -> None:
    """Raw decode speed per thread count, quiet and with one core busy. The counts
    run interleaved, round by round, so a neighbour's load hits them all alike."""
    settings = rt.Settings().resolved()
    assert settings.n_ctx
    counts = sorted({1, 2, *range(2, (os.cpu_count() or 2) + 1, 2)})
    servers = {n: raw_server(n, settings.n_ctx, 1) for n in counts}
    story = [{"role": "user", "content": "Tell a long story about a dragon who learns to cook."}]
    results: dict[tuple[int, bool], list[float]] = {}
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for server in servers.values():
                raw_once(server, story)
            for _ in range(ROUNDS[0]):
                for n, server in servers.items():
                    results.setdefault((n, busy), []).append(raw_once(server, story)[1])
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print(f"decode tokens/s, medians of {ROUNDS[0]} interleaved rounds (64-token answers)\n")
    print("| threads | quiet | one core busy |")
    print("| ---: | ---: | ---: |")
    for n in counts:
        quiet = statistics.median(results[(n, False)])
        loaded = statistics.median(results[(n, True)])
        print(f"| {n} | {quiet:.1f} | {loaded:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="default: as ails picks")
    parser.add_argument("--threads-scan", action="store_true")
    parser.add_argument("--rounds", type=int, default=ROUNDS[0], help="answers per median")
    args = parser.parse_args()
    ROUNDS[0] = args.rounds
    if args.threads_scan:
        threads_scan()
        return
    asyncio.run(table(args.threads or rt.default_threads()))


if __name__ == "__main__":
    main()
