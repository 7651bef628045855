"""Where ails keeps its files, the config file, and how settings are layered.

Paths: with ``AILS_HOME`` set, everything (config.toml, logs.db, keys.json,
the chat history) lives in that one folder, which is what tests and portable
installs want. Without it, data (logs, keys, history) goes to the platform's
user data folder and config.toml to the user config folder (platformdirs).

Precedence, the same for every setting: the command line, then the
environment, then files (keys.json for keys, config.toml for the rest), then
built-in defaults. So ``AILS_MODEL`` beats ``default_model``, and a provider
type's own variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``) beat a stored
key and ``[providers.openai]``. What a ``[providers.NAME]`` table means is in
:mod:`ails.provider_config`.

The config file (TOML)::

    default_model = "openai/gpt-4o-mini"

    [aliases]
    fast = "openai/gpt-4o-mini"

    [providers.openai]
    base_url = "http://127.0.0.1:8080/v1"

    [providers.groq]                  # a provider of your own naming
    type = "openai"
    base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"

Nothing here imports a provider, aiohttp or sqlite: the CLI reads its settings
on every start, and ``ails --help`` must stay fast.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ails.errors import ConfigError

APP_NAME = "ails"

#: Setting names whose values are secrets: masked by ``ails config show``.
_SECRET = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)


def home() -> Path | None:
    value = os.environ.get("AILS_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Logs, keys and chat history."""
    base = home()
    if base is not None:
        return base
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    base = home()
    if base is not None:
        return base
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def config_path() -> Path:
    """``AILS_CONFIG`` names another file; handy for one-off runs and tests."""
    value = os.environ.get("AILS_CONFIG")
    return Path(value).expanduser() if value else config_dir() / "config.toml"


def db_path() -> Path:
    return data_dir() / "logs.db"


def keys_path() -> Path:
    return data_dir() / "keys.json"


def history_path() -> Path:
    return data_dir() / "chat_history"


@dataclass
class Settings:
    """What config.toml says, checked for shape; empty when there is no file."""

    default_model: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None


def read_toml(path: Path) -> dict[str, Any] | None:
    """The one TOML reader: a file's tables, ``None`` when it does not exist,
    a :class:`ConfigError` naming the file when it cannot be read or parsed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
        return data
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load(path: Path | None = None) -> Settings:
    """Read and check the config file; a missing file is an empty config."""
    path = path or config_path()
    data = read_toml(path)
    if data is None:
        return Settings(path=path)
    return parse(data, path)


def parse(data: dict[str, Any], path: Path | None = None) -> Settings:
    where = str(path) if path else "config"
    known = {"default_model", "aliases", "providers"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    default_model = data.get("default_model")
    if default_model is not None and (not isinstance(default_model, str) or not default_model):
        raise ConfigError(f"{where}: default_model must be a model name like 'openai/gpt-4o'")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) and v for v in aliases.values()):
        raise ConfigError(f"{where}: [aliases] maps names to model names: fast = 'openai/gpt-4o'")
    providers = data.get("providers", {})
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        raise ConfigError(f"{where}: each provider is a table: [providers.openai]")
    if providers:
        from ails.provider_config import check_table

        for name, table in providers.items():
            check_table(name, table, where)
    return Settings(
        default_model=default_model,
        aliases=dict(aliases),
        providers={name: dict(table) for name, table in providers.items()},
        path=path,
    )


def default_model(settings: Settings) -> tuple[str, str]:
    """The default model and where it came from (``AILS_MODEL``, the file, built in)."""
    from ails.providers.registry import DEFAULT_MODEL

    env = os.environ.get("AILS_MODEL")
    if env:
        return env, "AILS_MODEL"
    if settings.default_model:
        return settings.default_model, str(settings.path or "config")
    return DEFAULT_MODEL, "built-in"


def key_env_names(provider: str, settings: Settings | None = None) -> tuple[str, ...]:
    from ails import provider_config

    table = settings.providers.get(provider, {}) if settings else {}
    return provider_config.key_env_names(provider, table)


def resolve_key(
    provider: str,
    stored: Callable[[], dict[str, str]],
    settings: Settings | None = None,
) -> tuple[str | None, str | None]:
    """The key for ``provider`` and where it came from (an environment
    variable, the keys file, the config file); ``(None, None)`` when none."""
    from ails import provider_config

    table = settings.providers.get(provider, {}) if settings else {}
    return provider_config.resolve_key(provider, table, stored)


def provider_settings(provider: str, settings: Settings) -> dict[str, Any]:
    """The settings to build ``provider`` with, less its key and what the
    environment overrides."""
    from ails import provider_config

    return provider_config.provider_settings(provider, settings.providers.get(provider, {}))


def is_secret(name: str) -> bool:
    return bool(_SECRET.search(name))


def mask(value: str) -> str:
    """Enough of a key to tell two apart, never enough to use: ``sk-…wxyz``."""
    if len(value) < 12:
        return "****"
    return f"{value[:3]}…{value[-4:]}"


def masked(value: Any, name: str = "") -> Any:
    """A copy of a config value with every secret-looking entry masked."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, name) for v in value]
    if isinstance(value, str) and is_secret(name):
        return mask(value)
    return value
