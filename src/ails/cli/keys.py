"""``ails keys``: store API keys in a file only the user can read.

``ails keys set openai`` asks for the key without echoing it (or reads it
from stdin when piped: ``pass show openai | ails keys set openai``). There is
deliberately no ``--value``: a key on the command line lands in the shell
history and in ``ps``. Environment variables override stored keys.
"""

from __future__ import annotations

import os
import sys

import click

from ails.cli._ui import help_without_subcommand, is_terminal, note


@click.group("keys", invoke_without_command=True)
@click.pass_context
def keys_cmd(ctx: click.Context) -> None:
    """Manage stored API keys (environment variables override them)."""
    help_without_subcommand(ctx)


@keys_cmd.command("set")
@click.argument("name")
def keys_set(name: str) -> None:
    """Store the key for provider NAME, read without echo."""
    from ails import config, keys

    if is_terminal(sys.stdin):
        value = click.prompt(f"Key for {name}", hide_input=True, err=True)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise click.UsageError("no key given")
    path = config.keys_path()
    keys.set_key(path, name, value)
    note(f"Stored the key for {name} in {path}.")
    for env in config.key_env_names(name):
        if os.environ.get(env):
            note(f"{env} is set and overrides it.")


@keys_cmd.command("list")
def keys_list() -> None:
    """List the names of stored keys (never the keys)."""
    from ails import config, keys

    for name in sorted(keys.load(config.keys_path())):
        override = next((e for e in config.key_env_names(name) if os.environ.get(e)), None)
        click.echo(f"{name}  (overridden by {override})" if override else name)


@keys_cmd.command("remove")
@click.argument("name")
def keys_remove(name: str) -> None:
    """Forget the stored key for NAME."""
    from ails import config, keys

    if not keys.remove_key(config.keys_path(), name):
        raise click.BadParameter(f"no key stored for {name!r}", param_hint="'NAME'")
    note(f"Removed the key for {name}.")


@keys_cmd.command("path")
def keys_path() -> None:
    """Print the path of the keys file."""
    from ails import config

    click.echo(str(config.keys_path()))
