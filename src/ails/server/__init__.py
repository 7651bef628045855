"""``ails serve``: an OpenAI-compatible gateway over the library's providers.

:func:`create_gateway` turns a :class:`~ails.server.config.GatewayConfig` into
the handlers and their router; :func:`~ails.server.app.build_app` into an
aiohttp application. docs/gateway.md describes the behaviour.

Importing this package imports aiohttp (it is the server) but loads no model
and touches no network; :meth:`Gateway.start` does that.
"""

from __future__ import annotations

from typing import cast

from ails.providers.base import Provider, Timeouts
from ails.providers.openai import OpenAIProvider
from ails.server.app import AccessLogger, Gateway, build_app
from ails.server.auth import Authenticator
from ails.server.config import GatewayConfig, UpstreamSettings, build_config
from ails.server.errors import Redactor
from ails.server.limits import MemoryStore, StateStore
from ails.server.routing import GatewayRouter


def upstream_provider(settings: UpstreamSettings, timeouts: Timeouts) -> OpenAIProvider:
    """An OpenAI-compatible provider whose errors and logs name it by its
    display name (``upstream0``), never by its URL.

    The key is always explicit (``""`` for none), so the provider never falls
    back to ``OPENAI_API_KEY`` and never sends a key meant for OpenAI to some
    other server.
    """
    cls = cast(
        "type[OpenAIProvider]",
        type(f"Upstream_{settings.name}", (OpenAIProvider,), {"name": settings.name}),
    )
    return cls(base_url=settings.url, api_key=settings.key or "", timeouts=timeouts)


def create_gateway(config: GatewayConfig, *, store: StateStore | None = None) -> Gateway:
    timeouts = Timeouts(
        connect=config.connect_timeout, idle=config.idle_timeout, total=config.timeout
    )
    redact = Redactor(config.secrets())
    upstreams = [upstream_provider(u, timeouts) for u in config.upstreams]
    local: Provider | None = None
    if config.serve_local:
        from ails.providers.local import LocalProvider

        local = LocalProvider(timeouts=timeouts)
    router = GatewayRouter(
        upstreams=upstreams,
        local=local,
        aliases=config.aliases,
        max_retries=config.max_retries,
        refresh_interval=config.models_refresh,
        list_timeout=min(10.0, config.timeout or 10.0),
        redact=redact,
    )
    auth = Authenticator(
        api_keys=config.api_keys,
        allow_signed=config.allow_signed,
        window_ms=int(config.signature_window * 1000),
        store=store or MemoryStore(),
        quota=config.signed_quota,
        trusted_proxies=config.trusted_proxies,
    )
    return Gateway(
        router=router,
        auth=auth,
        redact=redact,
        max_body_bytes=config.max_body_bytes,
        max_messages=config.max_messages,
        max_tokens_cap=config.max_tokens_cap,
    )


__all__ = [
    "AccessLogger",
    "Gateway",
    "GatewayConfig",
    "build_app",
    "build_config",
    "create_gateway",
    "upstream_provider",
]
