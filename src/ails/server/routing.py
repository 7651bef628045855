"""Which backend serves which model name.

A backend is any provider instance (an ``--upstream`` URL, a provider named in
the config file, the embedded model, a plugin). The gateway serves:

* every model a backend lists (``list_models``; for an HTTP upstream its
  ``/v1/models``, cut to the backend's ``models`` allow-list when it has one)
  under that exact name, and always also as ``NAME/MODEL``. A bare name
  listed by several backends goes to them in the configured order, the later
  ones as fallbacks; ``NAME/MODEL`` goes to that backend only;
* aliases (``NAME=TARGET``), where TARGET is any name above (or another alias).

The lists are fetched at start and again when a request names a model nobody
lists, at most once per ``refresh_interval``, so a model added upstream later
starts working without a restart. Names are resolved by the library's one rule
(:func:`ails.providers.registry.resolve_alias`). Retries and fallbacks are the
library's :class:`~ails.router.Router`; this subclass only hands it ready
``(provider, model)`` pairs, with each backend's own retry count.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ails.errors import (
    AuthFailed,
    ConfigError,
    ProviderError,
    Timeout,
    UpstreamUnavailable,
)
from ails.providers import registry
from ails.providers.base import Provider, Timeouts
from ails.router import ProviderPool, Router
from ails.server.errors import GatewayError, Redactor

log = logging.getLogger("ails.server")

_Target = str | tuple[Provider, str]
#: Least seconds between two tries of a model list that was never fetched.
UNFETCHED_RETRY_S = 2.0
_encode = msgspec.json.Encoder().encode


@dataclass
class Backend:
    """A provider instance as the gateway uses it."""

    provider: Provider
    #: Retries before the answer starts; ``None``: the gateway's default.
    retries: int | None = None
    #: Only these models are served (``None``: whatever the backend lists).
    models: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.provider.name


def _created(entry: dict[str, Any], default: int) -> int:
    """A backend's ``created``, kept only when it is a Unix time in seconds."""
    value = entry.get("created")
    return value if type(value) is int and value >= 0 else default


class GatewayRouter(Router):
    def __init__(
        self,
        backends: Sequence[Backend] = (),
        *,
        aliases: dict[str, str] | None = None,
        max_retries: int = 2,
        refresh_interval: float = 30.0,
        list_timeout: float = 10.0,
        redact: Redactor | None = None,
    ) -> None:
        super().__init__(ProviderPool(timeouts=Timeouts()), max_retries=max_retries)
        self.backends = list(backends)
        self.gateway_aliases = dict(aliases or {})
        self._wildcards = any(name.endswith("*") for name in self.gateway_aliases)
        self.refresh_interval = refresh_interval
        self.list_timeout = list_timeout
        self.redact = redact or Redactor()
        self._retries = {id(b.provider): b.retries for b in self.backends if b.retries is not None}
        # Each backend's models, with the ``created`` it reports.
        self._lists: list[list[tuple[str, int]]] = [[] for _ in self.backends]
        #: Whether each backend's list was ever fetched: until it is, a name
        #: nobody lists may still be that backend's (503, not 404).
        self._fetched = [False for _ in self.backends]
        #: When each backend was started: ``created`` of the models of one
        #: that is not an HTTP endpoint (the embedded model: when it loaded).
        self._started = [0 for _ in self.backends]
        self._table: dict[str, list[_Target]] = {}
        self._owners: dict[str, str] = {}
        self._created: dict[str, int] = {}
        self.models_body = b'{"object":"list","data":[]}'
        self._lock = asyncio.Lock()
        self._last_refresh: float | None = None
        #: Failed model-list refreshes per backend name (the metrics show them).
        self.list_failures: Counter[str] = Counter()
        #: Why each backend's last model-list fetch failed, for the 503 (name -> words).
        self._list_errors: dict[str, str] = {}

    # -- the model table ---------------------------------------------------------

    async def start(self) -> None:
        """Open every backend (the embedded model loads here), fetch every
        list, and check that the aliases can ever work."""
        names = {b.name for b in self.backends}
        for alias, target in self.gateway_aliases.items():
            owner, _ = registry.resolve_model(
                registry.resolve_alias(target, self.gateway_aliases), configured=names
            )
            if owner is not None and owner not in names:
                raise ConfigError(
                    f"alias {alias}={target} points at {owner}, which this gateway does not "
                    f"serve (its backends: {', '.join(sorted(names))})"
                )
        for i, backend in enumerate(self.backends):
            await backend.provider.start()
            self._started[i] = int(time.time())
        await self.refresh(force=True)
        for alias, target in self.gateway_aliases.items():
            if not alias.endswith("*") and alias not in self._table:
                log.warning("alias %s=%s: no backend serves %s yet", alias, target, target)

    async def refresh(self, *, force: bool = False) -> None:
        """Ask every backend for its models; keep the old list of one that fails."""
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
                    asyncio.wait_for(b.provider.list_model_objects(), self.list_timeout)
                    for b in self.backends
                ),
                return_exceptions=True,
            )
            for i, result in enumerate(results):
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    self.list_failures[self.backends[i].name] += 1
                    self._list_errors[self.backends[i].name] = _list_error(result)
                    log.warning(
                        "could not list the models of %s: %s",
                        self.backends[i].name,
                        self.redact(f"{type(result).__name__}: {result}"),
                    )
                else:
                    backend = self.backends[i]
                    default = self._started[i] if backend.provider.base_url is None else 0
                    allowed = backend.models
                    self._lists[i] = [
                        (str(m["id"]), _created(m, default))
                        for m in result
                        if allowed is None or m["id"] in allowed
                    ]
                    self._fetched[i] = True
            self._last_refresh = loop.time()
            self._rebuild()

    def _interval(self) -> float:
        # A list never fetched is asked for again sooner: the backend may have
        # been down only while the gateway started.
        if all(self._fetched):
            return self.refresh_interval
        return min(self.refresh_interval, UNFETCHED_RETRY_S)

    def unlisted(self) -> list[str]:
        """The backends whose model list was never fetched."""
        return [b.name for b, ok in zip(self.backends, self._fetched, strict=True) if not ok]

    def not_served(self, model: str) -> GatewayError:
        """The refusal of a name no backend lists: 404, or 503 while some
        backend's list was never fetched (the name may be that backend's)."""
        missing = [b.name for b, ok in zip(self.backends, self._fetched, strict=True) if not ok]
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
        errors = self._list_errors
        why = "; ".join(f"{name}: {errors.get(name, 'not asked yet')}" for name in missing)
        return GatewayError(
            503,
            f"the model list of {', '.join(missing)} could not be fetched yet ({why}), "
            f"so {model!r} may be served there; retry in {retry} s",
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

        for backend, models in zip(self.backends, self._lists, strict=True):
            for model, when in models:
                add(model, backend.provider, model, when)
        for backend, models in zip(self.backends, self._lists, strict=True):
            for model, when in models:
                add(f"{backend.name}/{model}", backend.provider, model, when)
        for alias in self.gateway_aliases:
            if alias.endswith("*"):
                continue  # a pattern, not a name: matched on lookup (_named)
            target = registry.resolve_alias(alias, self.gateway_aliases)
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

    def canonical(self, model: str) -> str:
        """The name an alias stands for (the name itself when it is none)."""
        return registry.resolve_alias(model, self.gateway_aliases)

    def model_names(self) -> list[str]:
        return list(self._owners)

    def _named(self, model: str) -> str:
        """``model``, or the name a wildcard alias (``claude-*``) makes of it;
        looked up only when the name itself is not in the table."""
        if model in self._table or not self._wildcards:
            return model
        return registry.resolve_alias(model, self.gateway_aliases)

    def served_name(self, model: str) -> str | None:
        """The table's name for ``model`` (itself, or what a wildcard alias
        makes of it), or None when nothing serves it: a bounded label."""
        name = self._named(model)
        return name if name in self._table else None

    def owner(self, model: str) -> str | None:
        return self._owners.get(self._named(model))

    def created(self, model: str) -> int:
        """``created`` of a served model: the backend's own, or (a backend that
        is not an HTTP endpoint) when it was started."""
        return self._created.get(self._named(model), 0)

    def serves(self, model: str) -> bool:
        """Whether ``model`` is in the table now (no refresh: the hot path)."""
        return self._named(model) in self._table

    async def knows(self, model: str) -> bool:
        """Whether some backend serves ``model``, refreshing the lists if not (rate-limited)."""
        if self.serves(model):
            return True
        if self.backends:
            await self.refresh()
        return self.serves(model)

    def targets(self, model: str | None) -> list[_Target]:
        # _named inline: once per request.
        name = model or ""
        found = self._table.get(name)
        if found is None and self._wildcards:
            found = self._table.get(registry.resolve_alias(name, self.gateway_aliases))
        return found if found is not None else []

    def retries_for(self, provider: Provider) -> int:
        return self._retries.get(id(provider), self.max_retries)

    async def aclose(self) -> None:
        for backend in self.backends:
            try:
                await backend.provider.aclose()
            except Exception as exc:  # shutting down: report, go on closing the rest
                log.warning("closing %s: %s", backend.name, exc)
        await self.pool.aclose()


__all__ = ["Backend", "GatewayRouter"]


def _list_error(exc: BaseException) -> str:
    """Why a model-list fetch failed, in words a client can act on (no upstream
    text: it may quote the key or an address)."""
    if isinstance(exc, AuthFailed):
        return "it refused the gateway's key for it"
    if isinstance(exc, (asyncio.TimeoutError, Timeout)):
        return "it did not answer in time"
    if isinstance(exc, UpstreamUnavailable):
        return "it cannot be reached or is unavailable"
    if isinstance(exc, ProviderError) and exc.status is not None:
        return f"it answered HTTP {exc.status}"
    return f"its answer could not be used ({type(exc).__name__})"
