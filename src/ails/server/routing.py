"""Which backend serves which model name.

The gateway serves:

* every model an upstream's ``/v1/models`` lists, under that exact name; a
  name listed by several upstreams goes to them in the order they were
  configured, the later ones as fallbacks;
* the embedded model, when enabled, as ``local/default`` and ``default``
  (after any upstream that lists ``default`` itself);
* aliases (``NAME=TARGET``), where TARGET is any name above (or another alias).

Upstream lists are fetched at startup and again when a request names a model
nobody lists, at most once per ``refresh_interval``, so a model added upstream
later starts working without a restart. Retries and fallbacks are the
library's :class:`~ails.router.Router`; this subclass only hands it ready
``(provider, model)`` pairs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgspec

from ails.errors import ConfigError, ProtocolError, UpstreamUnavailable
from ails.providers._http import MAX_JSON_BODY, HTTPProvider, in_band_error, read_limited
from ails.providers.base import Provider, Timeouts
from ails.router import ProviderPool, Router
from ails.server.errors import GatewayError, Redactor
from ails.types import ChatRequest, Completion

log = logging.getLogger("ails.server")

_Target = str | tuple[Provider, str]
#: Least seconds between two tries of a model list that was never fetched.
UNFETCHED_RETRY_S = 2.0
_encode = msgspec.json.Encoder().encode


class _Probe(msgspec.Struct):
    """Just enough of a ``chat.completion`` to tell an answer from an error."""

    error: Any = None
    choices: Any = None


_probe = msgspec.json.Decoder(_Probe).decode


def _created(entry: dict[str, Any]) -> int:
    """An upstream's ``created``, kept only when it is a Unix time in seconds."""
    value = entry.get("created")
    return value if type(value) is int and value >= 0 else 0


class GatewayRouter(Router):
    def __init__(
        self,
        *,
        upstreams: Sequence[Provider] = (),
        local: Provider | None = None,
        aliases: dict[str, str] | None = None,
        max_retries: int = 2,
        refresh_interval: float = 30.0,
        list_timeout: float = 10.0,
        redact: Redactor | None = None,
    ) -> None:
        super().__init__(ProviderPool(timeouts=Timeouts()), max_retries=max_retries)
        self.upstreams = list(upstreams)
        self.local = local
        self.gateway_aliases = dict(aliases or {})
        self.refresh_interval = refresh_interval
        self.list_timeout = list_timeout
        self.redact = redact or Redactor()
        # Each upstream's models, with the ``created`` it reports (0 when it says none).
        self._lists: list[list[tuple[str, int]]] = [[] for _ in self.upstreams]
        #: Whether each upstream's list was ever fetched: until it is, a name
        #: nobody lists may still be that upstream's (503, not 404).
        self._fetched = [False for _ in self.upstreams]
        self._local_names: list[str] = []
        #: When the embedded model was loaded (``created`` in ``/v1/models``).
        self.local_created = 0
        self._table: dict[str, list[_Target]] = {}
        self._owners: dict[str, str] = {}
        self._created: dict[str, int] = {}
        self.models_body = b'{"object":"list","data":[]}'
        self._lock = asyncio.Lock()
        self._last_refresh: float | None = None

    # -- the model table ---------------------------------------------------------

    async def start(self) -> None:
        """Fetch every list now; check that the aliases can ever work."""
        if self.local is not None:
            self._local_names = await self.local.list_models()
            # Gateway.start has just loaded the model.
            self.local_created = int(time.time())
        for alias, target in self.gateway_aliases.items():
            if target.startswith("local/") and self.local is None:
                raise ConfigError(
                    f"alias {alias}={target} points at the embedded model, which this gateway "
                    "does not serve (add --local)"
                )
        await self.refresh(force=True)
        for alias, target in self.gateway_aliases.items():
            if alias not in self._table:
                log.warning(
                    "alias %s=%s: no backend serves %s yet (it may appear later)",
                    alias,
                    target,
                    target,
                )

    async def refresh(self, *, force: bool = False) -> None:
        """Ask every upstream for its models; keep the old list of one that fails."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if (
                not force
                and self._last_refresh is not None
                and loop.time() - self._last_refresh < self._interval()
            ):
                return
            results = await asyncio.gather(
                *(
                    asyncio.wait_for(u.list_model_objects(), self.list_timeout)
                    for u in self.upstreams
                ),
                return_exceptions=True,
            )
            for i, result in enumerate(results):
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    log.warning(
                        "could not list the models of %s: %s",
                        self.upstreams[i].name,
                        self.redact(f"{type(result).__name__}: {result}"),
                    )
                else:
                    self._lists[i] = [(str(m["id"]), _created(m)) for m in result]
                    self._fetched[i] = True
            self._last_refresh = loop.time()
            self._rebuild()

    def _interval(self) -> float:
        # A list never fetched is asked for again sooner: the upstream may have
        # been down only while the gateway started.
        if all(self._fetched):
            return self.refresh_interval
        return min(self.refresh_interval, UNFETCHED_RETRY_S)

    def not_served(self, model: str) -> GatewayError:
        """The refusal of a name no backend lists: 404, or 503 while some
        upstream's list was never fetched (the name may be that upstream's)."""
        missing = [u.name for u, ok in zip(self.upstreams, self._fetched, strict=True) if not ok]
        if not missing:
            return GatewayError(
                404,
                f"The model {model!r} does not exist or is not served here "
                "(GET /v1/models lists what is).",
                code="model_not_found",
                param="model",
            )
        wait = self._interval()
        if self._last_refresh is not None:
            elapsed = asyncio.get_running_loop().time() - self._last_refresh
            wait = max(0.0, wait - elapsed)
        retry = max(1, math.ceil(wait))
        return GatewayError(
            503,
            f"the model list of {', '.join(missing)} could not be fetched yet (the upstream "
            f"cannot be reached), so {model!r} may be served there; retry in {retry} s",
            type="server_error",
            code="backend_unavailable",
            headers={"retry-after": str(retry)},
        )

    def _rebuild(self) -> None:
        table: dict[str, list[_Target]] = {}
        owners: dict[str, str] = {}
        created: dict[str, int] = {}

        def add(name: str, provider: Provider, model: str, when: int) -> None:
            table.setdefault(name, []).append((provider, model))
            owners.setdefault(name, provider.name)
            created.setdefault(name, when)

        for provider, models in zip(self.upstreams, self._lists, strict=True):
            for model, when in models:
                add(model, provider, model, when)
        if self.local is not None:
            for model in self._local_names:
                add(f"local/{model}", self.local, model, self.local_created)
                add(model, self.local, model, self.local_created)
        for alias in self.gateway_aliases:
            target = self._resolve_alias(alias)
            if target in table:
                table[alias] = table[target]
                owners[alias] = owners[target]
                created[alias] = created[target]
        self._table = table
        self._owners = owners
        self._created = created
        data = [
            {"id": name, "object": "model", "created": created[name], "owned_by": owner}
            for name, owner in owners.items()
        ]
        self.models_body = _encode({"object": "list", "data": data})

    def _resolve_alias(self, name: str) -> str:
        seen = {name}
        target = self.gateway_aliases[name]
        while target in self.gateway_aliases and target not in seen:
            seen.add(target)
            target = self.gateway_aliases[target]
        return target

    def canonical(self, model: str) -> str:
        """The name an alias stands for (the name itself when it is none)."""
        return self._resolve_alias(model) if model in self.gateway_aliases else model

    def model_names(self) -> list[str]:
        return list(self._owners)

    def owner(self, model: str) -> str | None:
        return self._owners.get(model)

    def created(self, model: str) -> int:
        """``created`` of a served model: the upstream's own, or when the
        embedded model was loaded."""
        return self._created.get(model, 0)

    def serves(self, model: str) -> bool:
        """Whether ``model`` is in the table now (no refresh: the hot path)."""
        return model in self._table

    async def knows(self, model: str) -> bool:
        """Whether some backend serves ``model``, refreshing the lists if not (rate-limited)."""
        if model in self._table:
            return True
        if self.upstreams:
            await self.refresh()
        return model in self._table

    def targets(self, model: str | None) -> list[_Target]:
        return self._table.get(model or "", [])

    # -- non-streamed answers, passed on as the upstream's bytes ------------------

    async def complete_raw(self, request: ChatRequest) -> bytes:
        """A whole ``chat.completion`` as JSON bytes.

        From an HTTP upstream the bytes are the upstream's own, so fields ails
        does not model survive; they are only checked to be an answer, not an
        error object. Other providers' completions are encoded here.
        """

        async def attempt(provider: Provider, model: str, params: dict[str, Any]) -> bytes:
            params.pop("stream", None)
            if isinstance(provider, HTTPProvider):
                params.pop("stream_options", None)  # only valid with stream: true
                body = {"model": model, "messages": request.messages, **params, "stream": False}
                return await _post_raw(provider, body)
            params.pop("stream_options", None)
            completion = await provider.complete(model, request.messages, **params)
            completion.model = request.model  # made here: it says the name asked for
            return completion_json(completion)

        return await self._run(request, attempt)

    async def aclose(self) -> None:
        for provider in [*self.upstreams, *([self.local] if self.local else [])]:
            try:
                await provider.aclose()
            except Exception as exc:  # shutting down: report, go on closing the rest
                log.warning("closing %s: %s", provider.name, exc)
        await self.pool.aclose()


def completion_json(completion: Completion) -> bytes:
    """A completion ails made, with every field a client expects on the wire
    (``Completion``'s own encoding omits defaults such as ``object``)."""
    out: dict[str, Any] = {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": completion.choices,
    }
    if completion.usage is not None:
        out["usage"] = completion.usage
    if completion.system_fingerprint is not None:
        out["system_fingerprint"] = completion.system_fingerprint
    return _encode(out)


async def _post_raw(provider: HTTPProvider, body: dict[str, Any]) -> bytes:
    resp, _ = await provider.post("/chat/completions", body, streaming=False)
    try:
        raw, cut = await read_limited(resp, MAX_JSON_BODY)
    except (aiohttp.ClientError, OSError) as exc:
        resp.close()
        raise UpstreamUnavailable(
            f"connection lost while reading the answer ({type(exc).__name__})",
            provider=provider.name,
        ) from exc
    finally:
        resp.release()
    if cut:
        raise ProtocolError(
            f"answer is larger than {MAX_JSON_BODY} bytes", provider=provider.name, code="too_large"
        )
    try:
        probe = _probe(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolError(
            f"answer is not a chat.completion JSON object: {exc}",
            provider=provider.name,
            code="invalid_completion",
        ) from None
    if probe.error is not None:
        raise in_band_error(probe.error, provider=provider.name)
    if not isinstance(probe.choices, list):
        raise ProtocolError(
            "answer is not a chat.completion JSON object (no 'choices')",
            provider=provider.name,
            code="invalid_completion",
        )
    return raw


__all__ = ["GatewayRouter"]
