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
from ails.server.cache import ResponseCache
from ails.server.config import GatewayConfig, UpstreamSettings, build_config, redact_url
from ails.server.errors import Redactor
from ails.server.limits import MemoryStore, StateStore
from ails.server.policy import PolicyStore
from ails.server.ratelimit import RateLimiter
from ails.server.routing import GatewayRouter
from ails.server.security import SecurityPolicy


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


def shared_store(config: GatewayConfig) -> StateStore:
    """Redis behind the failure policy with ``--redis``, else this process's memory."""
    if config.redis is None:
        return MemoryStore()
    from ails.server.redis_store import RedisStore  # redis-py is loaded only here

    redis = RedisStore(
        config.redis,
        prefix=config.redis_prefix,
        timeout=config.redis_timeout,
        where=redact_url(config.redis),
    )
    return PolicyStore(redis, fail_open=config.redis_failure == "open")


def create_gateway(config: GatewayConfig, *, store: StateStore | None = None) -> Gateway:
    timeouts = Timeouts(
        connect=config.connect_timeout, idle=config.idle_timeout, total=config.timeout
    )
    redact = Redactor(config.secrets(), names=config.upstream_addresses())
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
    store = store or shared_store(config)
    auth = Authenticator(
        api_keys=config.api_keys,
        allow_signed=config.allow_signed,
        window_ms=int(config.signature_window * 1000),
        store=store,
        quota=config.signed_quota,
        trusted_proxies=config.trusted_proxies,
    )
    gateway = Gateway(
        router=router,
        auth=auth,
        redact=redact,
        max_body_bytes=config.max_body_bytes,
        max_anonymous_body_bytes=config.max_anonymous_body_bytes,
        max_messages=config.max_messages,
        max_tokens_cap=config.max_tokens_cap,
        limiter=RateLimiter.build(
            store, api_keys=config.api_keys, tables=config.keys, rpm=config.rpm, tpm=config.tpm
        ),
        cache=ResponseCache(store, config.cache_ttl) if config.cache_ttl > 0 else None,
    )
    gateway.security = SecurityPolicy.build(
        bind_host=config.host, allowed_hosts=config.allowed_hosts, cors_origins=config.cors_origins
    )
    return gateway


__all__ = [
    "AccessLogger",
    "Gateway",
    "GatewayConfig",
    "build_app",
    "build_config",
    "create_gateway",
    "shared_store",
    "upstream_provider",
]
