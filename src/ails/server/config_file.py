"""The gateway's config file: read by the one TOML reader
(:func:`ails.config.read_toml`), every setting's type checked before anything
is built from it, so a typo is a clear startup error. The keys and their
types come from the options' one declaration (``server/options.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ails.config import read_toml
from ails.errors import ConfigError
from ails.server.option_spec import file_key_of
from ails.server.options import declared

#: Tables read apart from the declared options.
_TABLES = ("upstreams", "aliases", "keys", "providers")


def load_file(path: str) -> dict[str, Any]:
    """A TOML config; its settings sit at the top level or in a ``[serve]``
    table, its ``[providers.NAME]`` tables at the top level or in ``[serve]``."""
    data = read_toml(Path(path).expanduser())
    if data is None:
        raise ConfigError(f"cannot read the config file {path}: it does not exist")
    serve = data.get("serve", data)
    if not isinstance(serve, dict):
        raise ConfigError(f"{path}: [serve] must be a table")
    if serve is not data and "providers" in data:  # [providers.NAME] beside [serve]
        serve = {**serve, "providers": data["providers"]}
    return serve


def _kind_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


_WHAT = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_file(data: Mapping[str, Any]) -> None:
    known = {file_key_of(n, o) for n, o in declared()} - {""}
    known |= set(_TABLES)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in the config file: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    for name, opt in declared():
        key = file_key_of(name, opt)
        if not key or key not in data:
            continue
        value = data[key]
        if opt.multiple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"config setting {key} must be a list of strings")
        elif not _kind_ok(value, opt.kind):
            raise ConfigError(
                f"config setting {key} must be {opt.what or _WHAT[opt.kind]}, not {value!r}"
            )
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError('config [aliases] must map names to model names: "NAME" = "MODEL"')
    providers = data.get("providers", {})
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        raise ConfigError("config [providers.NAME] must be tables")
