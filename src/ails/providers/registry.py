"""Find provider classes by name, and split ``"provider/model"`` names.

Built-ins are named by module path and imported on first use, so importing
``ails`` loads no backend (aiohttp, the model runtime). Third-party providers
register under the entry-point group ``ails.providers``; the group is only read
when a name is not a built-in. ``AILS_DISABLE_PLUGINS=1`` ignores them.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ails.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from ails.providers.base import Provider

BUILTINS: dict[str, str] = {
    "local": "ails.providers.local:LocalProvider",
    "openai": "ails.providers.openai:OpenAIProvider",
    "signed": "ails.providers.signed:SignedProvider",
}

#: The default model of the library, the CLI and the gateway.
DEFAULT_MODEL = "local/default"

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


def split_model(
    name: str | None,
    *,
    aliases: dict[str, str] | None = None,
    default: str | None = None,
) -> tuple[str, str]:
    """``"openai/gpt-4o"`` -> ``("openai", "gpt-4o")``.

    An alias is looked up first; a bare name (or one whose first part is not a
    provider, like ``meta-llama/Llama-3``) goes to the default model's provider.
    """
    default = default or default_model()
    if not name:
        name = default
    seen = set()
    while aliases and name in aliases and name not in seen:
        seen.add(name)
        name = aliases[name]
    provider, sep, model = name.partition("/")
    if sep and model and is_provider(provider):
        return provider, model
    default_provider, _, _ = default.partition("/")
    return default_provider, name
