"""The gateway's backends, built from its settings: any provider instance.

``--backend NAME`` (``backends = [...]`` in TOML) names a provider from the
config files' ``[providers.NAME]`` tables or a registered type (``local``,
``signed``, a plugin); ``--upstream URL`` is the shorthand for an unnamed
OpenAI-compatible one (``upstream1``, ``upstream2``...). The order is the
fallback order: the ``--backend`` order, then the upstreams. With neither,
the default model's provider (the embedded model) is the one backend.

A backend sends the key its own provider settings name (no keys file, and an
``--upstream`` never falls back to ``OPENAI_API_KEY``). Its pool has no
connection cap unless ``max_connections`` sets one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yarl import URL

from ails import provider_config
from ails.errors import ConfigError
from ails.providers import registry
from ails.providers.base import Provider, Timeouts
from ails.server.config import GatewayConfig, is_loopback
from ails.server.routing import Backend


def build_backends(
    config: GatewayConfig, environ: Mapping[str, str]
) -> tuple[list[Backend], list[str]]:
    """The backends in fallback order, and the keys they were given (secrets
    to redact from every message and log)."""
    timeouts = Timeouts(
        connect=config.connect_timeout, idle=config.idle_timeout, total=config.timeout
    )
    out: list[Backend] = []
    keys: list[str] = []
    for name in config.backend_names():
        out.append(_named(name, config, timeouts, environ, keys))
    for u in config.upstreams:
        settings = {"type": registry.URL_TYPE, "base_url": u.url, "api_key": u.key or ""}
        out.append(Backend(_build(u.name, settings, timeouts)))
    check_self_loop(out, config.host, config.port)
    return out, keys


def _named(
    name: str,
    config: GatewayConfig,
    timeouts: Timeouts,
    environ: Mapping[str, str],
    keys: list[str],
) -> Backend:
    table = config.providers.get(name, {})
    if not table and not registry.is_provider(name):
        known = sorted({*config.providers, *registry.names()})
        raise ConfigError(
            f"--backend {name}: no [providers.{name}] table in the config files and no "
            f"provider type of that name; known: {', '.join(known)}"
        )
    provider_config.check_table(name, table, "config")
    settings: dict[str, Any] = provider_config.provider_settings(name, table, environ)
    cls = registry.provider_class(provider_config.type_of(name, table))
    if "max_queue" in cls.settings():  # the embedded model's line (--max-queue)
        settings.setdefault("max_queue", config.max_queue)
    if "api_key" in cls.settings():
        key, _ = provider_config.resolve_key(name, table, dict, environ)
        if key is not None:
            settings["api_key"] = key
            keys.append(key)
    if table.get("timeout") is not None:
        timeouts = Timeouts(timeouts.connect, timeouts.idle, float(table["timeout"]) or None)
    models = table.get("models")
    return Backend(
        _build(name, settings, timeouts),
        retries=table.get("retries"),
        models=tuple(models) if models is not None else None,
    )


def _build(name: str, settings: dict[str, Any], timeouts: Timeouts) -> Provider:
    if "max_connections" in registry.provider_class(settings.get("type") or name).settings():
        settings.setdefault("max_connections", None)
    return registry.build(name, settings, timeouts=timeouts)


def check_self_loop(backends: list[Backend], host: str, port: int) -> None:
    """A backend whose base URL is this gateway would send every request to
    itself, forever: refused at start. ``port`` 0 (not bound yet) checks nothing."""
    if not port:
        return
    for backend in backends:
        base = backend.provider.base_url
        if base is None:
            continue
        url = URL(base)
        if url.port != port or url.host is None:
            continue
        same_host = url.host == host or (
            (is_loopback(url.host) or url.host in ("0.0.0.0", "::"))
            and (is_loopback(host) or host in ("0.0.0.0", "::", ""))
        )
        if same_host:
            raise ConfigError(
                f"backend {backend.name} points at this gateway itself ({host}:{port}): "
                "every request would loop"
            )


__all__ = ["build_backends", "check_self_loop"]
