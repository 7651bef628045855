"""Find provider types by name, build named instances, resolve model names.

Built-ins are named by module path and imported on first use, so importing
``ails`` loads no backend (aiohttp, the model runtime). Third-party providers
register under the entry-point group ``ails.providers``; the group is only read
when a name is not a built-in. ``AILS_DISABLE_PLUGINS=1`` ignores them.

A provider *instance* has a name: a registered type's own, or one the user
chose (``[providers.groq] type = "openai"``); :func:`build` makes one, and
:func:`resolve_model` is the one rule that turns a model name into
``(provider name, model)`` for the library, the CLI and the gateway.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Collection, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from ails.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from ails.providers.base import Provider, Timeouts

BUILTINS: dict[str, str] = {
    "local": "ails.providers.local:LocalProvider",
    "openai": "ails.providers.openai:OpenAIProvider",
    "signed": "ails.providers.signed:SignedProvider",
    "anthropic": "ails.providers.anthropic:AnthropicProvider",
}

#: The default model of the library, the CLI and the gateway.
DEFAULT_MODEL = "local/default"
#: The provider type a bare base URL makes (``ails serve --upstream URL``).
URL_TYPE = "openai"

_loaded: dict[str, type[Provider]] = {}


def _plugin_targets() -> dict[str, str]:
    if os.environ.get("AILS_DISABLE_PLUGINS"):
        return {}
    return {ep.name: ep.value for ep in entry_points(group="ails.providers")}


def _load(target: str, name: str) -> type[Provider]:
    from ails.providers.base import Provider

    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        hint = ""
        if name == "local":
            from ails.local.weights import INSTALL_HINT

            hint = f" (install it with: {INSTALL_HINT})"
        raise ConfigError(f"provider {name!r} cannot be loaded: {exc}{hint}") from exc
    except AttributeError as exc:
        raise ConfigError(f"provider {name!r} points at a missing object {target!r}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Provider)):
        raise ConfigError(f"provider {name!r} ({target}) is not an ails Provider class")
    return obj


def names() -> list[str]:
    """Every known provider name, built-ins first."""
    return list(BUILTINS) + sorted(n for n in _plugin_targets() if n not in BUILTINS)


def provider_class(name: str) -> type[Provider]:
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    target = BUILTINS.get(name) or _plugin_targets().get(name)
    if target is None:
        raise NotFound(f"unknown provider {name!r}; known: {', '.join(names())}", provider=name)
    cls = _load(target, name)
    _loaded[name] = cls
    return cls


def is_provider(name: str) -> bool:
    return name in BUILTINS or name in _loaded or name in _plugin_targets()


def default_model() -> str:
    """``AILS_MODEL`` or the embedded model (the config file layer sits in ails.config)."""
    return os.environ.get("AILS_MODEL") or DEFAULT_MODEL


def resolve_alias(name: str, aliases: Mapping[str, str]) -> str:
    """Follow aliases to the name they stand for (a cycle stops where it closes).

    An alias whose name ends in ``*`` stands for every name with that prefix
    (``claude-*``: agents ask for their own model names); an exact alias wins,
    then the longest prefix.
    """
    seen = set()
    while name not in seen:
        target = aliases.get(name)
        if target is None:
            target = _wildcard(name, aliases)
        if target is None:
            break
        seen.add(name)
        name = target
    return name


def _wildcard(name: str, aliases: Mapping[str, str]) -> str | None:
    best = ""
    for pattern in aliases:
        if pattern.endswith("*") and name.startswith(pattern[:-1]) and len(pattern) > len(best):
            best = pattern
    return aliases[best] if best else None


def resolve_model(
    name: str | None,
    *,
    aliases: Mapping[str, str] | None = None,
    configured: Collection[str] = (),
    default: str | None = None,
) -> tuple[str | None, str]:
    """``"groq/llama-3"`` -> ``("groq", "llama-3")``: the one naming rule.

    An alias is followed first; then ``PROVIDER/MODEL`` where PROVIDER is a
    configured name or a registered type (a configured name wins over a plugin
    of the same name: it is looked up first). Otherwise the name is bare
    (``meta-llama/Llama-3`` included) and the provider is ``None``: the gateway
    then asks its backends' model lists, the library and the CLI use the
    default model's provider (:func:`split_model`).
    """
    name = resolve_alias(name or default or default_model(), aliases or {})
    provider, sep, model = name.partition("/")
    if sep and model and (provider in configured or is_provider(provider)):
        return provider, model
    return None, name


def split_model(
    name: str | None,
    *,
    aliases: Mapping[str, str] | None = None,
    configured: Collection[str] = (),
    default: str | None = None,
) -> tuple[str, str]:
    """:func:`resolve_model`, with a bare name sent to the default model's provider."""
    default = default or default_model()
    provider, model = resolve_model(name, aliases=aliases, configured=configured, default=default)
    if provider is not None:
        return provider, model
    return default.partition("/")[0], model


def build(name: str, settings: Mapping[str, Any], *, timeouts: Timeouts) -> Provider:
    """An instance named ``name``, of the type ``settings["type"]`` (default:
    the type called ``name``), built with the rest of ``settings``.

    An instance named otherwise than its type gets ``api_key=""`` when none is
    given, so it never reads the type's own key variable (a key meant for
    OpenAI is not sent to another server).
    """
    kwargs = dict(settings)
    type_name = kwargs.pop("type", None) or name
    if not isinstance(type_name, str):
        raise ConfigError(f"provider {name!r}: type must be a provider type name")
    cls = provider_class(type_name)
    allowed = [s for s in cls.settings() if s != "timeouts"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"provider {name!r} ({type_name}) has no setting {', '.join(unknown)}; "
            f"it takes: {', '.join(allowed)}"
        )
    if type_name != name and "api_key" in allowed:
        kwargs.setdefault("api_key", "")
    try:
        instance = cls(**{"timeouts": timeouts, **kwargs})
    except TypeError as exc:
        raise ConfigError(f"provider {name!r}: {exc}") from None
    instance.name = name
    return instance
