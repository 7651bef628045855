"""Embedded model: decode speed of constrained answers (JSON Schema, a tool call)
against an unconstrained one, on the same prompt, in the same run.

    .venv/bin/python bench/bench_constrained.py [--rounds 5]

Three answers to one prompt, interleaved round by round so all see the same
machine state: (free) plain text; (schema) ``response_format`` json_schema;
(tool) ``tool_choice: "required"``, the call generated under the schema ails
builds from the tool. Each through ails (``LocalProvider.connect``, the model
loaded once) and, for free and schema, through the raw runtime (xllamacpp's
own ``Server``, a second copy of the model) with the same request, so the
constrained slowdown can be told apart from anything ails adds.

Decode speed is (completion tokens - 1) / (time from the first token to the
end): the prompts differ in length (the tools are rendered into the tool
prompt), so prompt processing is left out. Medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from ails.local import runtime as rt  # noqa: E402
from ails.providers.local import LocalProvider  # noqa: E402
from bench_local import raw_server  # noqa: E402

MESSAGES = [{"role": "user", "content": "Describe a city you would like to visit, and why."}]
MAX_TOKENS = 64
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "country": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "best_month": {"type": "string", "enum": ["spring", "summer", "autumn", "winter"]},
    },
    "required": ["city", "country", "reasons", "best_month"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "visit", "schema": SCHEMA}}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "plan_visit", "description": "Plan a trip", "parameters": SCHEMA},
    }
]
KINDS: dict[str, dict[str, Any]] = {
    "free": {},
    "schema": {"response_format": RESPONSE_FORMAT},
    "tool": {"tools": TOOLS, "tool_choice": "required"},
}


async def ails_once(provider: LocalProvider, extra: dict[str, Any], seed: int) -> float:
    stream = await provider.connect(
        "default", MESSAGES, max_tokens=MAX_TOKENS, temperature=0.7, seed=seed, **extra
    )
    first = time.perf_counter()  # connect returns with the runtime's first token
    tokens = 0
    try:
        async for batch in stream:
            for chunk in batch:
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
    finally:
        await stream.aclose()
    return (tokens - 1) / (time.perf_counter() - first)


def raw_once(server: Any, extra: dict[str, Any], seed: int) -> float:
    request = {
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "seed": seed,
        "stream_options": {"include_usage": True},
        **extra,
    }
    stamps: list[float] = []
    tokens = [0]

    def on_chunk(data: Any) -> bool:
        chunk = json.loads(data) if isinstance(data, (str, bytes)) else data
        if chunk.get("choices"):
            stamps.append(time.perf_counter())
        if chunk.get("usage"):
            tokens[0] = chunk["usage"]["completion_tokens"]
        return False

    server.handle_chat_completions(json.dumps(request).encode(), on_chunk)
    return (tokens[0] - 1) / (stamps[-1] - stamps[0])


async def main(rounds: int) -> None:
    settings = rt.Settings().resolved()
    assert settings.threads and settings.n_ctx and settings.parallel
    rt.get_runtime(settings, progress=lambda m: None)
    provider = LocalProvider()
    server = raw_server(settings.threads, settings.n_ctx, settings.parallel)
    for kind, extra in KINDS.items():  # warm: caches, pages, grammars
        await ails_once(provider, extra, 0)
        if kind != "tool":
            raw_once(server, extra, 0)
    lib: dict[str, list[float]] = {k: [] for k in KINDS}
    raw: dict[str, list[float]] = {k: [] for k in KINDS if k != "tool"}
    for seed in range(1, rounds + 1):
        for kind, extra in KINDS.items():
            lib[kind].append(await ails_once(provider, extra, seed))
            if kind in raw:
                raw[kind].append(raw_once(server, extra, seed))
    med = {k: statistics.median(v) for k, v in lib.items()}
    raw_med = {k: statistics.median(v) for k, v in raw.items()}
    load = os.getloadavg()[0]
    print(
        f"\n{os.cpu_count()} cores (load average {load:.1f}), threads={settings.threads}, "
        f"max_tokens={MAX_TOKENS}, temperature 0.7, seeds 1..{rounds}, medians of {rounds}\n"
    )
    print("| answer | ails tokens/s | vs free | raw runtime tokens/s | ails vs raw |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind in KINDS:
        raw_cell = f"{raw_med[kind]:.1f}" if kind in raw_med else ""
        vs_raw = f"{med[kind] / raw_med[kind]:.3f}x" if kind in raw_med else ""
        print(
            f"| {kind} | {med[kind]:.1f} | {med[kind] / med['free']:.2f}x | {raw_cell} | {vs_raw} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
