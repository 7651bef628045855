"""What a ``[providers.NAME]`` table of the config file means.

A table configures one provider *instance*: ``type`` is any registered
provider type (plugins too; it defaults to NAME when NAME is one), the other
keys are that type's settings (``base_url``, ``headers``, ``max_connections``
...), and the key comes from ``api_key_env`` (the name of a variable) >
``api_key_file`` > ``api_key``::

    [providers.groq]
    type = "openai"
    base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"

A gateway reads three more keys, for the provider as one of its backends:
``timeout`` (seconds for a whole answer), ``retries`` and ``models`` (an
allow-list: a large upstream need not list hundreds).

Which environment variables a type reads (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``) the type says itself (:class:`ails.providers.base.Provider`);
nothing here names a provider. Importing this module imports no provider.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from ails.errors import ConfigError
from ails.keyrules import read_key

KEY_FIELDS = ("api_key", "api_key_env", "api_key_file")
#: Read by a gateway for a backend; not settings of the provider itself.
BACKEND_FIELDS = ("timeout", "retries", "models")


def type_of(name: str, table: Mapping[str, Any], where: str = "config") -> str:
    """The provider type a table makes; a missing ``type`` is NAME when NAME
    is a registered type, else an error."""
    from ails.providers import registry

    kind = table.get("type")
    if kind is None:
        if registry.is_provider(name):
            return name
        raise ConfigError(
            f"{where}: [providers.{name}] needs type = one of {', '.join(registry.names())} "
            f"({name!r} is not a provider type)"
        )
    if not isinstance(kind, str) or not registry.is_provider(kind):
        raise ConfigError(
            f"{where}: [providers.{name}] type = {kind!r} is not a provider type; "
            f"known: {', '.join(registry.names())}"
        )
    return kind


def check_table(name: str, table: Mapping[str, Any], where: str = "config") -> None:
    """The shape of the gateway-only keys, and that the type exists."""
    type_of(name, table, where)
    label = f"{where}: [providers.{name}]"
    timeout = table.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ConfigError(f"{label} timeout must be seconds")
    retries = table.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise ConfigError(f"{label} retries must be a whole number >= 0")
    models = table.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)
    ):
        raise ConfigError(f"{label} models must be a list of model names")


def _type_class(name: str, table: Mapping[str, Any]) -> Any:
    from ails.errors import AilsError
    from ails.providers import registry

    try:
        return registry.provider_class(type_of(name, table))
    except AilsError:
        return None


def key_env_names(name: str, table: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The variables that may hold NAME's key without the table naming one:
    the type's own (only when NAME is the type) and ``AILS_KEY_<NAME>``."""
    generic = "AILS_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    table = table or {}
    own: tuple[str, ...] = ()
    if table.get("type") in (None, name):
        cls = _type_class(name, table)
        own = tuple(cls.key_env) if cls is not None else ()
    return (*own, generic)


def setting_env(name: str, table: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Settings the environment gives (they beat the table): the type's own
    variables, only for the instance named as the type."""
    table = table or {}
    if table.get("type") not in (None, name):
        return {}
    cls = _type_class(name, table)
    return dict(cls.setting_env) if cls is not None else {}


def resolve_key(
    name: str,
    table: Mapping[str, Any],
    stored: Callable[[], dict[str, str]],
    environ: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """NAME's key and where it came from; ``(None, None)`` when there is none.

    ``api_key_env`` in the table wins outright (unset: an error naming it).
    Otherwise: the type's and the generic variables, then the keys file
    (``stored`` reads it, only when needed), then ``api_key_file``, ``api_key``.
    """
    env = os.environ if environ is None else environ
    where = f"[providers.{name}]"
    if "api_key_env" in table:
        return read_key(table, "api_key", where, env)
    for var in key_env_names(name, table):
        value = env.get(var)
        if value:
            return value, var
    keys = stored()
    if keys.get(name):
        return keys[name], "keys file"
    return read_key(table, "api_key", where, env)


def provider_settings(
    name: str, table: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings to build NAME with (``type`` included), less the key
    fields, the gateway-only keys and what the environment overrides."""
    env = os.environ if environ is None else environ
    out = {k: v for k, v in table.items() if k not in KEY_FIELDS and k not in BACKEND_FIELDS}
    for setting, var in setting_env(name, table).items():
        if env.get(var):
            out.pop(setting, None)
    return out


__all__ = [
    "BACKEND_FIELDS",
    "KEY_FIELDS",
    "check_table",
    "key_env_names",
    "provider_settings",
    "resolve_key",
    "setting_env",
    "type_of",
]
