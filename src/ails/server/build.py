"""Turns a :class:`~ails.server.options.GatewayConfig` into the gateway: its
backends, router, state store, authenticator, limits and cache."""

from __future__ import annotations

import os
from collections.abc import Mapping

from yarl import URL

from ails.server.app import Gateway
from ails.server.auth import Authenticator
from ails.server.backends import build_backends
from ails.server.cache import ResponseCache
from ails.server.config import redact_url
from ails.server.errors import Redactor
from ails.server.options import GatewayConfig
from ails.server.policy import PolicyStore
from ails.server.ratelimit import RateLimiter
from ails.server.records import BackendRecorder
from ails.server.routing import Backend, GatewayRouter
from ails.server.security import SecurityPolicy
from ails.server.state import MemoryStore, StateStore


def backend_addresses(backends: list[Backend]) -> dict[str, str]:
    """Each backend's URL and ``host:port``, shown as ``<name>``: a client
    learns which backend failed, not where it lives."""
    out: dict[str, str] = {}
    for backend in backends:
        if backend.provider.base_url is None:
            continue
        url = URL(backend.provider.base_url)
        label = f"<{backend.name}>"
        out[str(url).rstrip("/")] = label
        if url.host:
            out[f"{url.host}:{url.port}"] = label
    return out


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


def create_gateway(
    config: GatewayConfig,
    *,
    store: StateStore | None = None,
    environ: Mapping[str, str] | None = None,
) -> Gateway:
    backends, keys = build_backends(config, os.environ if environ is None else environ)
    redact = Redactor([*config.secrets(), *keys], names=backend_addresses(backends))
    router = GatewayRouter(
        backends,
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
        key_names={k.key: k.name for k in config.keys},
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
        security=SecurityPolicy.build(
            bind_host=config.host,
            allowed_hosts=config.allowed_hosts,
            cors_origins=config.cors_origins,
        ),
        responses_ttl=config.responses_ttl,
    )
    observe(gateway, config)
    return gateway


def observe(gateway: Gateway, config: GatewayConfig) -> None:
    """Metrics (``--no-metrics``: none), and a record of each request when
    the JSON access log wants one (its backend, tokens, first byte)."""
    if config.metrics:
        from ails.server.metrics import GatewayMetrics  # prometheus_client, only here

        gateway.metrics = GatewayMetrics(gateway, key=config.metrics_key)
    gateway.record_requests = config.log_format == "json" and config.access_log
    if gateway.record_requests and gateway.router.events is None:
        gateway.router.events = BackendRecorder()


__all__ = ["backend_addresses", "create_gateway", "observe", "shared_store"]
