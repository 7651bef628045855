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
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ails.errors import ConfigError
from ails.providers import registry
from ails.providers.base import Provider, Timeouts
from ails.router import ProviderPool, Router
from ails.server.errors import Redactor

log = logging.getLogger("ails.server")

_Target = str | tuple[Provider, str]
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
        self.refresh_interval = refresh_interval
        self.list_timeout = list_timeout
        self.redact = redact or Redactor()
        self._retries = {id(b.provider): b.retries for b in self.backends if b.retries is not None}
        self._lists: list[list[str]] = [[] for _ in self.backends]
        self._table: dict[str, list[_Target]] = {}
        self._owners: dict[str, str] = {}
        self.models_body = b'{"object":"list","data":[]}'
        self._lock = asyncio.Lock()
        self._last_refresh: float | None = None

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
        for backend in self.backends:
            await backend.provider.start()
        await self.refresh(force=True)
        for alias, target in self.gateway_aliases.items():
            if alias not in self._table:
                log.warning("alias %s=%s: no backend serves %s yet", alias, target, target)

    async def refresh(self, *, force: bool = False) -> None:
        """Ask every backend for its models; keep the old list of one that fails."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if (
                not force
                and self._last_refresh is not None
                and loop.time() - self._last_refresh < self.refresh_interval
            ):
                return
            results = await asyncio.gather(
                *(
                    asyncio.wait_for(b.provider.list_models(), self.list_timeout)
                    for b in self.backends
                ),
                return_exceptions=True,
            )
            for i, result in enumerate(results):
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    log.warning(
                        "could not list the models of %s: %s",
                        self.backends[i].name,
                        self.redact(f"{type(result).__name__}: {result}"),
                    )
                else:
                    allowed = self.backends[i].models
                    self._lists[i] = [m for m in result if allowed is None or m in allowed]
            self._last_refresh = loop.time()
            self._rebuild()

    def _rebuild(self) -> None:
        table: dict[str, list[_Target]] = {}
        owners: dict[str, str] = {}

        def add(name: str, provider: Provider, model: str) -> None:
            table.setdefault(name, []).append((provider, model))
            owners.setdefault(name, provider.name)

        for backend, models in zip(self.backends, self._lists, strict=True):
            for model in models:
                add(model, backend.provider, model)
        for backend, models in zip(self.backends, self._lists, strict=True):
            for model in models:
                add(f"{backend.name}/{model}", backend.provider, model)
        for alias in self.gateway_aliases:
            target = registry.resolve_alias(alias, self.gateway_aliases)
            if target in table:
                table[alias] = table[target]
                owners[alias] = owners[target]
        self._table = table
        self._owners = owners
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": owner}
            for name, owner in owners.items()
        ]
        self.models_body = _encode({"object": "list", "data": data})

    def canonical(self, model: str) -> str:
        """The name an alias stands for (the name itself when it is none)."""
        return registry.resolve_alias(model, self.gateway_aliases)

    def model_names(self) -> list[str]:
        return list(self._owners)

    def owner(self, model: str) -> str | None:
        return self._owners.get(model)

    def serves(self, model: str) -> bool:
        """Whether ``model`` is in the table now (no refresh: the hot path)."""
        return model in self._table

    async def knows(self, model: str) -> bool:
        """Whether some backend serves ``model``, refreshing the lists if not (rate-limited)."""
        if model in self._table:
            return True
        if self.backends:
            await self.refresh()
        return model in self._table

    def targets(self, model: str | None) -> list[_Target]:
        return self._table.get(model or "", [])

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
