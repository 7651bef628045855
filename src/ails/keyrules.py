"""Keys in configuration: the one reader of ``key``/``key_env``/``key_file``
fields, and what a key must look like, checked for every key read, wherever
it came from (flag, environment, key file, config file).

An empty key is the dangerous case: ``--api-key "$KEY"`` with ``KEY`` unset
gives ``""``, which the bind guard would count as "a key is set" while the
authenticator cannot match anything against it. So a key that cannot work
stops the start, naming where it came from, instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ails.errors import ConfigError

#: Client keys on an address beyond loopback: long enough not to be guessed.
MIN_PUBLIC_KEY_LENGTH = 16


def check_key(key: str, source: str, *, min_length: int = 1) -> str:
    """``key`` if it is non-empty visible ASCII without whitespace and at least
    ``min_length`` long; else a :class:`ConfigError` that names ``source``.

    Visible ASCII because a key travels in an HTTP header (``Authorization``),
    where anything else is mangled or refused on the way.
    """
    if not key:
        raise ConfigError(f"the key from {source} is empty (an unset variable?)")
    if any(c.isspace() for c in key):
        raise ConfigError(f"the key from {source} contains whitespace")
    if not all("!" <= c <= "~" for c in key):
        raise ConfigError(
            f"the key from {source} has a character that is not printable ASCII; "
            "keys travel in HTTP headers"
        )
    if len(key) < min_length:
        raise ConfigError(
            f"the key from {source} is {len(key)} characters; a client key on an address "
            f"beyond this machine needs at least {min_length}"
        )
    return key


def read_lines(path: str, what: str) -> list[str]:
    """Non-blank lines that are not ``#`` comments (key files)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def read_key(
    table: Mapping[str, Any], field: str, where: str, environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The key a config table gives, and its source: ``FIELD_env`` (the name of
    an environment variable) > ``FIELD_file`` (its first line) > ``FIELD``.

    ``FIELD`` is ``api_key`` in ``[providers.NAME]`` and ``key`` in the
    gateway's other tables. A named variable that is unset is an error naming
    it, never a silent fall back to another key. ``(None, None)``: no key given.
    """
    env_name = table.get(f"{field}_env")
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise ConfigError(f"{where}: {field}_env is the name of an environment variable")
        value = environ.get(env_name)
        if not value:
            raise ConfigError(
                f"{where}: {field}_env names {env_name}, which is not set in the environment"
            )
        source = f"{env_name} ({where})"
        return check_key(value, source), source
    path = table.get(f"{field}_file")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}: {field}_file is a path")
        lines = read_lines(path, "key")
        source = f"{where} {field}_file {path}"
        if not lines:
            raise ConfigError(f"the key file {path} ({where}) holds no key")
        return check_key(lines[0], source), source
    value = table.get(field)
    if value is None:
        return None, None
    source = f"{where} {field}"
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {field} must be a string")
    return check_key(value, source), source


__all__ = ["MIN_PUBLIC_KEY_LENGTH", "check_key", "read_key", "read_lines"]
