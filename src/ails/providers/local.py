"""The embedded model (``local/default``): Qwen2.5-Coder-0.5B-Instruct in-process.

Importing this module loads no runtime and touches no disk. The first
``connect`` (or :meth:`LocalProvider.load`) locates and verifies the weights and
loads llama.cpp in a dedicated thread; later calls reuse the loaded model, one
per process and settings. The model's own chat template formats the messages.

Settings, each also an environment variable (the argument wins):
``model_path`` / ``AILS_LOCAL_MODEL`` (any chat GGUF instead of the bundled one),
``threads`` / ``AILS_LOCAL_THREADS``, ``n_ctx`` / ``AILS_LOCAL_CTX`` (tokens per
request), ``parallel`` / ``AILS_LOCAL_PARALLEL`` (requests decoded at once; more
wait in line for a slot), ``max_queue`` / ``AILS_LOCAL_MAX_QUEUE`` (requests
that may wait; beyond them a 503 ``queue_full``, default 64).
``AILS_CACHE_DIR`` moves the joined weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ails.errors import ConfigError, NotFound
from ails.local.answer import open_answer
from ails.local.bridge import LocalStream
from ails.local.choices import queue_seconds
from ails.local.count import count_prompt_tokens
from ails.local.fit import check_fit, count_chat, count_text
from ails.local.params import plan_request
from ails.local.runtime import Runtime, Settings, _env_int, get_runtime, loaded
from ails.local.slots import DEFAULT_MAX_QUEUE, QueueSnapshot
from ails.local.speed import speed_of
from ails.local.text_params import plan_text
from ails.providers.base import ChunkStream, Provider, QueueWait, Reply, Timeouts, TokenCount
from ails.types import Chunk, completion_from_chunks

T = TypeVar("T")


class LocalProvider(Provider):
    name = "local"
    url: ClassVar[str | None] = None
    models: ClassVar[tuple[str, ...]] = ("default",)
    default_model: ClassVar[str | None] = "default"
    supports_stream: ClassVar[bool] = True
    needs_auth: ClassVar[bool] = False

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        model_path: str | None = None,
        threads: int | None = None,
        n_ctx: int | None = None,
        parallel: int | None = None,
        max_queue: int | None = None,
    ) -> None:
        super().__init__(timeouts=timeouts)
        for label, value in (("threads", threads), ("n_ctx", n_ctx), ("parallel", parallel)):
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"the local provider's {label} must be a whole number >= 1")
        if max_queue is not None and (type(max_queue) is not int or max_queue < 0):
            raise ConfigError("the local provider's max_queue must be a whole number >= 0")
        #: Requests that may wait for a slot; more are refused (503 queue_full).
        self.max_queue = max_queue if max_queue is not None else _max_queue_from_env()
        self._settings = Settings(
            model_path=os.fspath(model_path) if model_path else None,
            threads=threads,
            n_ctx=n_ctx,
            parallel=parallel,
        )

    def model_names(self) -> tuple[str, ...]:
        """``default``, plus the file name and stem of a configured GGUF (no disk access)."""
        path = self._settings.model_path or os.environ.get("AILS_LOCAL_MODEL")
        if not path:
            return self.models
        p = Path(path)
        return tuple(dict.fromkeys(("default", p.name, p.stem)))

    async def list_models(self) -> list[str]:
        return list(self.model_names())

    def readiness(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("xllamacpp") is None:
            from ails.local.weights import INSTALL_HINT

            return f"runtime not installed: {INSTALL_HINT}"
        return None

    async def start(self) -> None:
        await self.load()

    def queue_snapshot(self) -> QueueSnapshot:
        """Slots decoding, slots in all, requests waiting for one (all 0 busy
        before the model is loaded)."""
        runtime = loaded(self._settings)
        if runtime is None:
            return QueueSnapshot(busy=0, slots=self._settings.resolved().parallel or 1, queued=0)
        return runtime.gate.snapshot()

    def decode_speed(self) -> float:
        """Tokens per second one answer sees, over the last generations
        (local/speed.py); 0 before the model is loaded or has decoded."""
        runtime = loaded(self._settings)
        return 0.0 if runtime is None else speed_of(runtime.gate).tokens_per_second()

    async def load(self) -> Runtime:
        """Load the model now (the first ``connect`` otherwise does): joins and
        verifies the weights if needed, then loads them, off the event loop."""
        runtime = loaded(self._settings)
        if runtime is None:
            runtime = await _in_thread(get_runtime, self._settings)
        return runtime

    # The signature names the parameters honoured (Provider.params shows them);
    # ``other`` takes the rest of OpenAI's reference, which local.params accepts
    # and ignores, or refuses with a 400 that names the parameter.
    async def connect(
        self,
        model: str,
        messages: list[Any],
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        logit_bias: dict[str, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        response_format: dict[str, Any] | None = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        n: int | None = None,
        stream_options: dict[str, Any] | None = None,
        stream: bool = True,
        **other: Any,
    ) -> ChunkStream:
        """Start generating; return once the runtime has sent its first chunk.

        Waiting for that first event (not just for the request to be queued) means
        that a request the runtime refuses, like a prompt longer than the context,
        fails here, before the answer starts, as an HTTP provider's would.
        ``stream`` is accepted for compatibility: the answer is always streamed
        internally and always ends with usage. Chunks carry ``model`` as given.
        """
        self._check_model(model)
        params = {k: v for k, v in locals().items() if k not in _NOT_PARAMS}
        params.update(other)
        # Checked before the model loads: a bad request costs nothing.
        plan = plan_request(messages, params, slots=self._settings.resolved().parallel or 1)
        runtime = await self.load()
        return await open_answer(
            runtime,
            plan,
            model=model,
            provider=self.name,
            timeouts=self.timeouts,
            max_queue=self.max_queue,
        )

    async def stream_text(self, model: str, body: dict[str, Any]) -> ChunkStream:
        """The runtime's own text completion: the prompt as it is, no chat
        template (local/text_params.py says which parameters it honours).
        Counted before it queues, as a chat request is (local/fit.py)."""
        self._check_model(model)
        request = plan_text(body)  # checked before the model loads
        runtime = await self.load()
        tokens = await count_text(runtime.tokenizer, body.get("prompt"))
        fits = check_fit(tokens, runtime.n_ctx, lambda: request, provider=self.name, param="prompt")
        stream = LocalStream(
            runtime.server,
            request,
            provider=self.name,
            timeouts=self.timeouts,
            include_usage=True,  # the runtime puts usage on the last chunk
            model=model,
            gate=runtime.gate,
            max_queue=self.max_queue,
            announce=fits,
            text=True,
        )
        stream.start()
        try:
            await stream.wait_started()  # a prompt over the context fails here
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def reply(self, model: str, messages: list[Any], **params: Any) -> Reply:
        """The whole answer, and how long it waited for a slot (``queue_ms``):
        each told wait, up to its start (two for an ``auto`` tool call that
        waited again for its constrained generation), else the silent one."""
        params["stream"] = True
        stream = await self.connect(model, messages, **params)
        chunks: list[Chunk] = []
        waited = 0.0
        try:
            async for batch in stream:
                if type(batch) is QueueWait and batch.started:
                    waited += batch.waited or 0.0
                chunks.extend(batch)
        finally:
            await stream.aclose()
        waited = waited or queue_seconds(stream)
        return Reply(completion_from_chunks(chunks), queue_ms=round(waited * 1000))

    async def count_tokens(
        self, model: str, messages: list[Any], **params: Any
    ) -> TokenCount | None:
        """The chat-templated prompt (tools included) in the model's own tokens:
        counted in Python when the model's tokenizer is rebuilt (local/fit.py),
        else by a one-token generation that waits for a slot like any request."""
        self._check_model(model)
        tools = params.get("tools")
        # Checked as connect checks it, before the model loads.
        plan = plan_request(
            messages, {"tools": tools}, slots=self._settings.resolved().parallel or 1
        )
        runtime = await self.load()
        tokens = await count_chat(runtime.tokenizer, plan.body)
        if tokens is None:
            tokens = await count_prompt_tokens(
                runtime, plan, provider=self.name, timeouts=self.timeouts, max_queue=self.max_queue
            )
        return TokenCount(tokens, exact=True)

    def _check_model(self, model: str) -> None:
        names = self.model_names()
        if model not in names:
            raise NotFound(
                f"the local provider has no model {model!r}; it serves {', '.join(names)} "
                "(set model_path or AILS_LOCAL_MODEL for another GGUF file)",
                status=404,
                provider=self.name,
                code="model_not_found",
            )


_NOT_PARAMS = frozenset({"self", "model", "messages", "other"})


def _max_queue_from_env() -> int:
    raw = os.environ.get("AILS_LOCAL_MAX_QUEUE")
    if raw is not None and raw.strip() == "0":
        return 0
    return _env_int("AILS_LOCAL_MAX_QUEUE") or DEFAULT_MAX_QUEUE


async def _in_thread(fn: Callable[[Settings], T], arg: Settings) -> T:
    """Run ``fn`` in a fresh thread: a model load must not occupy a slot of the
    loop's default executor, which other work of the caller may be using."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if fut.done():  # the caller was cancelled; the load still completed for the next
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: T | None = fn(arg)
            error: BaseException | None = None
        except BaseException as exc:
            result, error = None, exc
        # A closed loop: nobody waits; the loaded runtime stays cached for the next one.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="ails-local-load", daemon=True).start()
    return await fut
