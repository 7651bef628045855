"""Retries, backoff and fallback: which provider answers, and when to try again.

The policy is openai-python's (style.md): retry connection errors, timeouts,
408, 409, 429 and every 5xx; honour ``retry-after`` up to a cap; otherwise back
off ``min(0.5 * 2**n, 8)`` seconds with jitter; never retry once the body has
started, which the provider split guarantees (only ``connect`` is retried).
Every retry and fallback is logged with its reason, and reported to the
router's :class:`RouterEvents`, if it has one (the gateway's metrics).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar

from ails.errors import AilsError, BadRequest, ProtocolError, ProviderError, Timeout
from ails.providers import registry
from ails.providers.base import ChunkStream, Provider, Reply, Timeouts, TokenCount
from ails.types import ChatRequest, Completion

log = logging.getLogger("ails.router")

T = TypeVar("T")

#: A server asking for a longer wait than this is not waited for.
RETRY_AFTER_CAP = 60.0


def retry_delay(
    attempt: int, retry_after: float | None, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (attempt counts from 0)."""
    if retry_after is not None and 0 <= retry_after <= RETRY_AFTER_CAP:
        return retry_after
    base = min(0.5 * 2.0**attempt, 8.0)
    return base * (1 - 0.25 * rand())


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProviderError):
        return exc.retryable
    return isinstance(exc, Timeout)


class RouterEvents:
    """What a :class:`Router` reports as it works, for whoever counts it (the
    gateway's metrics). Every hook does nothing here; a subclass overrides
    what it needs. A hook must be cheap and must not raise: it runs on the
    request's path."""

    def attempt(self, provider: Provider, model: str) -> None:
        """A call to ``provider`` is about to be made (the first, or a retry)."""

    def failed(self, provider: Provider, model: str, exc: AilsError, retrying: bool) -> None:
        """That call failed before its answer started; ``retrying``: the same
        provider is tried again."""

    def fallback(self, provider: Provider, model: str, exc: AilsError) -> None:
        """``provider`` is given up for the next target."""


class ProviderPool:
    """One instance per provider name, built from its settings on first use.

    ``settings`` maps a name to its settings; ``"type"`` among them makes a
    named instance of that type (``{"groq": {"type": "openai", ...}}``).
    """

    def __init__(
        self, settings: dict[str, dict[str, Any]] | None = None, *, timeouts: Timeouts
    ) -> None:
        self.settings = {k: dict(v) for k, v in (settings or {}).items()}
        self.timeouts = timeouts
        self._instances: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        inst = self._instances.get(name)
        if inst is None:
            inst = registry.build(name, self.settings.get(name, {}), timeouts=self.timeouts)
            self._instances[name] = inst
        return inst

    async def aclose(self) -> None:
        instances, self._instances = list(self._instances.values()), {}
        for inst in instances:
            await inst.aclose()


#: The request's fields that are ``connect`` parameters (all but these three).
_PARAM_FIELDS = tuple(
    f for f in ChatRequest.__struct_fields__ if f not in ("model", "messages", "extra")
)


#: ``accepted_params()`` by provider type: read per request, without a call.
_accepted: dict[type[Provider], tuple[frozenset[str], bool]] = {}


def request_params(provider: Provider, request: ChatRequest) -> dict[str, Any]:
    """The request as keyword arguments for ``connect``, refusing what it cannot honour."""
    # Once per request on the gateway's hot path: each field by name, not a
    # getattr loop over _PARAM_FIELDS (2k instructions, not 7k, measured);
    # tests/test_router.py checks that every field is here.
    r = request
    params: dict[str, Any] = {}
    v: Any
    if (v := r.stream) is not None:
        params["stream"] = v
    if (v := r.temperature) is not None:
        params["temperature"] = v
    if (v := r.top_p) is not None:
        params["top_p"] = v
    if (v := r.max_tokens) is not None:
        params["max_tokens"] = v
    if (v := r.stop) is not None:
        params["stop"] = v
    if (v := r.seed) is not None:
        params["seed"] = v
    if (v := r.n) is not None:
        params["n"] = v
    if (v := r.user) is not None:
        params["user"] = v
    if (v := r.tools) is not None:
        params["tools"] = v
    if (v := r.tool_choice) is not None:
        params["tool_choice"] = v
    if (v := r.response_format) is not None:
        params["response_format"] = v
    if (v := r.stream_options) is not None:
        params["stream_options"] = v
    if request.extra:
        for key, value in request.extra.items():
            params.setdefault(key, value)
    kind = type(provider)
    accepted, takes_extra = _accepted.get(kind) or _accepted.setdefault(
        kind, kind.accepted_params()
    )
    if not takes_extra:
        refused = [k for k in params if k not in accepted]
        if refused:
            raise BadRequest(
                f"provider {provider.name!r} does not support {', '.join(map(repr, refused))}; "
                f"{type(provider).params()}",
                provider=provider.name,
                code="unsupported_parameter",
            )
    return params


class Router:
    """Tries the model, then each fallback, with retries before the first byte."""

    def __init__(
        self,
        pool: ProviderPool,
        *,
        max_retries: int = 2,
        fallbacks: Sequence[str] = (),
        aliases: dict[str, str] | None = None,
        default_model: str | None = None,
        events: RouterEvents | None = None,
    ) -> None:
        self.pool = pool
        self.events = events
        self.max_retries = max_retries
        self.fallbacks = list(fallbacks)
        self.aliases = dict(aliases or {})
        self.default_model = default_model

    def resolve(self, model: str | None) -> tuple[Provider, str]:
        provider_name, model_name = registry.split_model(
            model,
            aliases=self.aliases,
            configured=self.pool.settings,
            default=self.default_model,
        )
        return self.pool.get(provider_name), model_name

    # Each ``attempt`` returns the provider's coroutine for ``run`` to await,
    # rather than awaiting it in a coroutine of its own, and these three
    # return ``run``'s coroutine for the caller to await: two frames less on
    # the request's path (a gateway pays each on every request, and again on
    # every resume while the upstream is waited for).

    def open_stream(self, request: ChatRequest) -> Coroutine[Any, Any, ChunkStream]:
        """The open stream of the answer (a coroutine: await it)."""
        messages = request.messages

        def attempt(
            provider: Provider, model: str, params: dict[str, Any]
        ) -> Awaitable[ChunkStream]:
            return provider.connect(model, messages, **params)

        return self.run(request.model, attempt, params=partial(request_params, request=request))

    def complete(self, request: ChatRequest) -> Coroutine[Any, Any, Completion]:
        """The whole answer (a coroutine: await it)."""
        messages = request.messages

        def attempt(
            provider: Provider, model: str, params: dict[str, Any]
        ) -> Awaitable[Completion]:
            params.pop("stream", None)
            params.pop("stream_options", None)
            return provider.complete(model, messages, **params)

        return self.run(request.model, attempt, params=partial(request_params, request=request))

    def reply(self, request: ChatRequest) -> Coroutine[Any, Any, Reply]:
        """A whole answer with its bytes as received (what a gateway passes
        on; a coroutine: await it)."""
        messages = request.messages

        def attempt(provider: Provider, model: str, params: dict[str, Any]) -> Awaitable[Reply]:
            params.pop("stream", None)
            params.pop("stream_options", None)
            return provider.reply(model, messages, **params)

        return self.run(request.model, attempt, params=partial(request_params, request=request))

    async def count_tokens(self, request: ChatRequest) -> TokenCount | None:
        """The prompt's size by the backend that would answer it (retried like
        an answer), or ``None`` when that backend cannot count."""

        async def attempt(
            provider: Provider, model: str, params: dict[str, Any]
        ) -> TokenCount | None:
            return await provider.count_tokens(model, request.messages, **params)

        # Only what changes the prompt: the messages and the tools.
        tools = {"tools": request.tools} if request.tools else {}
        return await self.run(request.model, attempt, params=lambda provider: dict(tools))

    def targets(self, model: str | None) -> list[str | tuple[Provider, str]]:
        """What to try, in order: the model, then the fallbacks. A subclass (the
        gateway) may return ready ``(provider, model)`` pairs instead of names."""
        return [model or "", *self.fallbacks]

    def retries_for(self, provider: Provider) -> int:
        """Retries before the answer starts; a gateway sets them per backend."""
        return self.max_retries

    async def run(
        self,
        model: str | None,
        attempt: Callable[[Provider, str, dict[str, Any]], Awaitable[T]],
        *,
        params: Callable[[Provider], dict[str, Any]] | None = None,
    ) -> T:
        """Call ``attempt(provider, model, params)`` on the model's targets in
        order, retrying each before its answer starts; ``params`` builds (and
        checks) the keyword arguments for one provider. Any endpoint uses this
        (chat, embeddings), so retries and fallbacks are written once."""
        targets = self.targets(model)
        last: AilsError | None = None
        for index, target in enumerate(targets):
            try:
                provider, model = (
                    target if isinstance(target, tuple) else self.resolve(target or None)
                )
                kwargs = params(provider) if params is not None else {}
            except AilsError as exc:
                last = exc
                if index + 1 < len(targets):
                    log.warning("skipping %s: %s", _label(target), exc)
                    continue
                raise
            retries = self.retries_for(provider)
            events = self.events
            for n in range(retries + 1):
                if events is not None:
                    events.attempt(provider, model)
                try:
                    return await attempt(provider, model, dict(kwargs))
                except (ProviderError, Timeout, ProtocolError) as exc:
                    last = exc
                    retrying = n < retries and is_retryable(exc)
                    if events is not None:
                        events.failed(provider, model, exc, retrying)
                    if not retrying:
                        break
                    retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
                    delay = retry_delay(n, retry_after)
                    log.info(
                        "retrying %s/%s in %.2f s (attempt %d of %d): %s",
                        provider.name,
                        model,
                        delay,
                        n + 2,
                        retries + 1,
                        exc,
                    )
                    await asyncio.sleep(delay)
            if index + 1 < len(targets):
                if events is not None and last is not None:
                    events.fallback(provider, model, last)
                log.warning(
                    "falling back from %s to %s: %s",
                    _label(target),
                    _label(targets[index + 1]),
                    last,
                )
        if last is None:
            raise BadRequest("no provider can serve this request", code="no_target")
        raise last


def _label(target: str | tuple[Provider, str]) -> str:
    return f"{target[0].name}/{target[1]}" if isinstance(target, tuple) else target
