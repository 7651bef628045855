"""The gateway's config file: reading the TOML and checking every setting's type
before anything is built from it, so a typo is a clear startup error."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ails.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the interpreter
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


def read_lines(path: str, what: str) -> list[str]:
    """Non-blank lines that are not ``#`` comments (key files)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def load_file(path: str) -> dict[str, Any]:
    """A TOML config; its settings sit at the top level or in a ``[serve]`` table."""
    try:
        with open(Path(path).expanduser(), "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    serve = data.get("serve", data)
    if not isinstance(serve, dict):
        raise ConfigError(f"{path}: [serve] must be a table")
    return serve


SCALARS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "host": (str, "a string"),
    "port": (int, "an integer"),
    "local": (bool, "true or false"),
    "allow_signed": (bool, "true or false"),
    "signed_quota": (str, 'a string like "15/day"'),
    "signature_window": ((int, float), "seconds"),
    "max_body_bytes": (int, "an integer"),
    "max_messages": (int, "an integer"),
    "max_tokens_cap": (int, "an integer"),
    "max_retries": (int, "an integer"),
    "connect_timeout": ((int, float), "seconds"),
    "idle_timeout": ((int, float), "seconds"),
    "timeout": ((int, float), "seconds"),
    "models_refresh": ((int, float), "seconds"),
    "client_header_timeout": ((int, float), "seconds"),
    "client_body_timeout": ((int, float), "seconds"),
    "keepalive_timeout": ((int, float), "seconds"),
    "max_connections": (int, "an integer"),
    "max_connections_per_client": (int, "an integer"),
    "max_anonymous_body_bytes": (int, "an integer"),
    "access_log": (bool, "true or false"),
    "insecure_public": (bool, "true or false"),
    "ui": (bool, "true or false"),
    "api_key_file": (str, "a path"),
    "upstream_key_file": (str, "a path"),
    "redis": (str, 'a URL like "redis://127.0.0.1:6379/0"'),
    "redis_prefix": (str, "a string"),
    "redis_timeout": ((int, float), "seconds"),
    "redis_failure": (str, '"closed" or "open"'),
    "cache_ttl": ((int, float), "seconds"),
    "rpm": (int, "an integer"),
    "tpm": (int, "an integer"),
}
_LISTS = ("api_keys", "trusted_proxies", "upstreams", "allowed_hosts", "cors_origins")
_KNOWN = set(SCALARS) | set(_LISTS) | {"aliases", "keys"}


def check_file(data: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in the config file: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_KNOWN))}"
        )
    for key, (types, what) in SCALARS.items():
        value = data.get(key)
        if value is not None and (
            not isinstance(value, types)
            or (isinstance(value, bool) and bool not in _as_tuple(types))
        ):
            raise ConfigError(f"config setting {key} must be {what}, not {value!r}")
    for key in ("api_keys", "trusted_proxies", "allowed_hosts", "cors_origins"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config setting {key} must be a list of strings")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError('config [aliases] must map names to model names: "NAME" = "MODEL"')


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
