"""``ails config path`` and ``ails config show``: where settings live and what
is in effect, every value with its source and every secret masked."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ails.cli._exchange import Env
from ails.cli._ui import help_without_subcommand


@click.group("config", invoke_without_command=True)
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Where the config file is, and the settings in effect."""
    help_without_subcommand(ctx)


@config_cmd.command("path")
def config_path_cmd() -> None:
    """Print the path of the config file (it may not exist yet)."""
    from ails import config

    click.echo(str(config.config_path()))


def effective(env: Env) -> dict[str, Any]:
    """The settings in effect: ``{"value": ..., "source": ...}`` per setting."""
    from ails import config, provider_config

    settings = env.settings
    path = config.config_path()
    file = str(settings.path or path)
    providers: dict[str, dict[str, Any]] = {}
    for name in env.provider_names():
        table = settings.providers.get(name, {})
        entries: dict[str, Any] = {}
        for setting, value in table.items():
            if setting not in provider_config.KEY_FIELDS:
                entries[setting] = {"value": config.masked(value, setting), "source": file}
        for setting, var in provider_config.setting_env(name, table).items():
            if os.environ.get(var):
                entries[setting] = {"value": os.environ[var], "source": var}
        key, source = env.key_for(name)
        if key:
            entries["api_key"] = {"value": config.mask(key), "source": source}
        if entries:
            providers[name] = entries
    return {
        "config_file": {"path": str(path), "exists": path.exists()},
        "data_dir": str(config.data_dir()),
        "logs": str(config.db_path()),
        "keys_file": str(config.keys_path()),
        "default_model": {"value": env.default_model, "source": env.default_source},
        "aliases": dict(settings.aliases),
        "providers": providers,
    }


@config_cmd.command("show")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def config_show(as_json: bool) -> None:
    """Print the settings in effect (keys masked), as TOML with sources."""
    data = effective(Env.load())
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    cfg = data["config_file"]
    state = "" if cfg["exists"] else " (not found: built-in defaults)"
    click.echo(f"# config file: {cfg['path']}{state}")
    click.echo(f"# logs: {data['logs']}")
    click.echo(f"# keys: {data['keys_file']}")
    default = data["default_model"]
    click.echo(f"default_model = {_toml(default['value'])}  # {default['source']}")
    if data["aliases"]:
        click.echo("\n[aliases]")
        for alias, target in data["aliases"].items():
            click.echo(f"{_key(alias)} = {_toml(target)}")
    for name, entries in data["providers"].items():
        click.echo(f"\n[providers.{_key(name)}]")
        for setting, entry in entries.items():
            click.echo(f"{_key(setting)} = {_toml(entry['value'])}  # {entry['source']}")


def _key(name: str) -> str:
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else json.dumps(name)


def _toml(value: Any) -> str:
    """A TOML value: JSON's string escapes are valid TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))
