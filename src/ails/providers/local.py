"""The embedded model (``local/default``): Qwen2.5-Coder-0.5B-Instruct in-process.

Importing this module loads no runtime and touches no disk. The first
``connect`` (or :meth:`LocalProvider.load`) locates and verifies the weights and
loads llama.cpp in a dedicated thread; later calls reuse the loaded model, one
per process and settings. The model's own chat template formats the messages.

Settings, each also an environment variable (the argument wins):
``model_path`` / ``AILS_LOCAL_MODEL`` (any chat GGUF instead of the bundled one),
``threads`` / ``AILS_LOCAL_THREADS``, ``n_ctx`` / ``AILS_LOCAL_CTX`` (tokens per
request), ``parallel`` / ``AILS_LOCAL_PARALLEL`` (requests decoded at once; more
wait in the runtime's queue). ``AILS_CACHE_DIR`` moves the joined weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import msgspec

from ails.errors import BadRequest, ConfigError, NotFound
from ails.local.bridge import LocalStream
from ails.local.runtime import Runtime, Settings, get_runtime, loaded
from ails.providers.base import ChunkStream, Provider, Timeouts

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
#: Usage is always asked of the runtime: the stream puts it on the final chunk, or
#: in a usage-only chunk when the caller asked for ``include_usage`` (as OpenAI).
_STREAM_OPTIONS = {"include_usage": True}


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
    ) -> None:
        super().__init__(timeouts=timeouts)
        for label, value in (("threads", threads), ("n_ctx", n_ctx), ("parallel", parallel)):
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"the local provider's {label} must be a whole number >= 1")
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

    async def load(self) -> Runtime:
        """Load the model now (the first ``connect`` otherwise does): joins and
        verifies the weights if needed, then loads them, off the event loop."""
        runtime = loaded(self._settings)
        if runtime is None:
            runtime = await _in_thread(get_runtime, self._settings)
        return runtime

    # The signature is the list of parameters honoured (Provider.accepted_params):
    # narrower than the base's **params on purpose, so the router refuses the rest.
    async def connect(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        stream_options: dict[str, Any] | None = None,
        stream: bool = True,
    ) -> ChunkStream:
        """Start generating; return once the runtime has sent its first chunk.

        Waiting for that first event (not just for the request to be queued) means
        that a request the runtime refuses, like a prompt longer than the context,
        fails here, before the answer starts, as an HTTP provider's would.
        ``stream`` and ``stream_options`` are accepted for compatibility: the
        answer is always streamed internally and always ends with usage.
        """
        names = self.model_names()
        if model not in names:
            raise NotFound(
                f"the local provider has no model {model!r}; it serves {', '.join(names)} "
                "(set model_path or AILS_LOCAL_MODEL for another GGUF file)",
                status=404,
                provider=self.name,
                code="model_not_found",
            )
        body = _request_body(messages, temperature, top_p, max_tokens, stop, seed)
        runtime = await self.load()
        answer = LocalStream(
            runtime.server,
            body,
            provider=self.name,
            timeouts=self.timeouts,
            include_usage=bool(stream_options and stream_options.get("include_usage")),
        )
        answer.start()
        try:
            await answer.wait_started()
        except BaseException:
            await answer.aclose()
            raise
        return answer


def _request_body(
    messages: list[Any],
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    stop: str | list[str] | None,
    seed: int | None,
) -> bytes:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", status=400, provider="local")
    if max_tokens is not None and max_tokens < 1:
        raise BadRequest("max_tokens must be at least 1", status=400, provider="local")
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": _STREAM_OPTIONS,
    }
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if max_tokens is not None:
        body["max_tokens"] = max_tokens  # tokens: the runtime's n_predict
    if stop:
        body["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if seed is not None:
        body["seed"] = seed
    try:
        return _encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        raise BadRequest(
            f"the request cannot be encoded as JSON: {exc}", status=400, provider="local"
        ) from None


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
