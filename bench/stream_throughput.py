"""One stream of 20,000 chunks through each client, in one run.

    .venv/bin/python bench/stream_throughput.py [--chunks 20000] [--runs 5] [--write docs/...]
        [--svg docs/...svg]

Two upstream shapes: ``token`` writes each chunk on its own, as an LLM server
does (the baseline of the issue's targets), and ``bulk`` writes 256 chunks at
a time, so that every read is full and only per-chunk cost is left.

Contenders: ails ``create_completion`` (text), ails typed chunks (sync and
async), the official openai SDK, httpx-sse, and raw httpx ``iter_lines`` +
``json.loads`` (the baseline every ratio is against). The upstream is
bench/mock_upstream.py in its own process. Prints medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import mock_upstream

MESSAGES = [{"role": "user", "content": "go"}]


def raw_httpx(base: str, model: str) -> int:
    import httpx

    n = 0
    body = {"model": model, "messages": MESSAGES, "stream": True}
    with httpx.Client() as c, c.stream("POST", f"{base}/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                if data == "[DONE]":
                    break
                obj = json.loads(data)
                if obj["choices"][0]["delta"].get("content") is not None:
                    n += 1
    return n


def httpx_sse(base: str, model: str) -> int:
    import httpx
    from httpx_sse import connect_sse

    n = 0
    body = {"model": model, "messages": MESSAGES, "stream": True}
    with httpx.Client() as c, connect_sse(c, "POST", f"{base}/chat/completions", json=body) as es:
        for sse in es.iter_sse():
            if sse.data == "[DONE]":
                break
            if json.loads(sse.data)["choices"][0]["delta"].get("content") is not None:
                n += 1
    return n


def openai_sdk(base: str, model: str) -> int:
    from openai import OpenAI

    n = 0
    with OpenAI(base_url=base, api_key="x") as c:
        for chunk in c.chat.completions.create(model=model, messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            if chunk.choices and chunk.choices[0].delta.content is not None:
                n += 1
    return n


def ails_text(base: str, model: str) -> int:
    import ails

    n = 0
    for _ in ails.create_completion(model, MESSAGES, provider="openai", base_url=base, api_key="x"):
        n += 1
    return n


def ails_chunks(base: str, model: str) -> int:
    import ails

    n = 0
    with ails.Client(providers={"openai": {"base_url": base, "api_key": "x"}}) as c:
        for chunk in c.chat.completions.create(
            model=f"openai/{model}", messages=MESSAGES, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content is not None:
                n += 1
    return n


def ails_async_chunks(base: str, model: str) -> int:
    import ails

    async def run() -> int:
        n = 0
        async with ails.AsyncClient(providers={"openai": {"base_url": base, "api_key": "x"}}) as c:
            stream = await c.chat.completions.create(
                model=f"openai/{model}", messages=MESSAGES, stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content is not None:
                    n += 1
        return n

    return asyncio.run(run())


CONTENDERS: list[tuple[str, Callable[[str, str], int]]] = [
    ("raw httpx iter_lines + json (baseline)", raw_httpx),
    ("httpx-sse", httpx_sse),
    ("openai SDK", openai_sdk),
    ("ails create_completion (text)", ails_text),
    ("ails Client typed chunks", ails_chunks),
    ("ails AsyncClient typed chunks", ails_async_chunks),
]


def measure(base: str, model: str, chunks: int, runs: int) -> dict[str, list[float]]:
    """Chunks per second of each run, by client."""
    results: dict[str, list[float]] = {}
    for name, fn in CONTENDERS:
        fn(base, model)  # warm-up: imports, connection, caches
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            n = fn(base, model)
            elapsed = time.perf_counter() - start
            if n != chunks:
                raise SystemExit(f"{name}: got {n} chunks, expected {chunks}")
            rates.append(n / elapsed)
        results[name] = rates
    return results


def table(title: str, results: dict[str, list[float]]) -> str:
    baseline = statistics.median(results[CONTENDERS[0][0]])
    lines = [f"### {title}", "", "| client | chunks/s | vs raw httpx |", "| --- | ---: | ---: |"]
    for name, rates in results.items():
        rate = statistics.median(rates)
        lines.append(f"| {name} | {rate:,.0f} | {rate / baseline:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", help="also write the tables to this markdown file")
    ap.add_argument("--svg", help="also draw the results into this SVG (bench/plot.py)")
    args = ap.parse_args()
    out = [
        f"One stream of {args.chunks:,} chunks per run, median of {args.runs} runs, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}.\n"
    ]
    by_shape: dict[str, dict[str, list[float]]] = {}
    with mock_upstream() as base:
        for shape, title in (
            ("chunks", "Upstream writes each chunk on its own (as an LLM server does)"),
            ("bulk", "Upstream writes 256 chunks at a time (per-chunk cost only)"),
        ):
            results = measure(base, f"{shape}:{args.chunks}", args.chunks, args.runs)
            by_shape["token" if shape == "chunks" else shape] = results
            out.append(table(title, results))
    text = "\n".join(out)
    print(text)
    if args.write:
        Path(args.write).write_text(text)
    if args.svg:
        from plot import stream_panels, write_svg

        write_svg(args.svg, "bench/stream_throughput.py", stream_panels(by_shape), note=out[0])


if __name__ == "__main__":
    main()
