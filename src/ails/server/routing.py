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
from collections.abc import Sequence

import msgspec

from ails.errors import ConfigError
from ails.providers.base import Provider, Timeouts
from ails.router import ProviderPool, Router
from ails.server.errors import Redactor

log = logging.getLogger("ails.server")

_Target = str | tuple[Provider, str]
_encode = msgspec.json.Encoder().encode


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
        self._lists: list[list[str]] = [[] for _ in self.upstreams]
        self._local_names: list[str] = []
        self._table: dict[str, list[_Target]] = {}
        self._owners: dict[str, str] = {}
        self.models_body = b'{"object":"list","data":[]}'
        self._lock = asyncio.Lock()
        self._last_refresh: float | None = None

    # -- the model table ---------------------------------------------------------

    async def start(self) -> None:
        """Fetch every list now; check that the aliases can ever work."""
        if self.local is not None:
            self._local_names = await self.local.list_models()
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
                and loop.time() - self._last_refresh < self.refresh_interval
            ):
                return
            results = await asyncio.gather(
                *(asyncio.wait_for(u.list_models(), self.list_timeout) for u in self.upstreams),
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
                    self._lists[i] = result
            self._last_refresh = loop.time()
            self._rebuild()

    def _rebuild(self) -> None:
        table: dict[str, list[_Target]] = {}
        owners: dict[str, str] = {}

        def add(name: str, provider: Provider, model: str) -> None:
            table.setdefault(name, []).append((provider, model))
            owners.setdefault(name, provider.name)

        for provider, models in zip(self.upstreams, self._lists, strict=True):
            for model in models:
                add(model, provider, model)
        if self.local is not None:
            for model in self._local_names:
                add(f"local/{model}", self.local, model)
                add(model, self.local, model)
        for alias in self.gateway_aliases:
            target = self._resolve_alias(alias)
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

    async def aclose(self) -> None:
        for provider in [*self.upstreams, *([self.local] if self.local else [])]:
            try:
                await provider.aclose()
            except Exception as exc:  # shutting down: report, go on closing the rest
                log.warning("closing %s: %s", provider.name, exc)
        await self.pool.aclose()


__all__ = ["GatewayRouter"]
