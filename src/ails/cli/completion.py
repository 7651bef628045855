"""``ails completion bash|zsh|fish``: print the shell's completion script.

Click generates it; the script calls ``ails`` back with ``_AILS_COMPLETE`` set.
Install, e.g. for bash: ``ails completion bash > ~/.local/share/bash-completion/completions/ails``
(or ``eval "$(ails completion bash)"`` in ~/.bashrc).
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.ClickException(f"click has no completion for {shell}")
    root = ctx.find_root().command
    click.echo(cls(root, {}, "ails", "_AILS_COMPLETE").source())
