"""The ``ails`` command: ``ails "question"`` streams an answer.

``ails PROMPT`` is short for ``ails prompt PROMPT``; other subcommands sit
beside it, one module each. Answers go to stdout and nothing else does:
progress and errors go to stderr, so pipes stay clean. Exit codes: 0 ok,
1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import click

from ails._version import __version__


class DefaultGroup(click.Group):
    """A group whose unknown first word is the prompt of the default command."""

    default_command = "prompt"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        known = args and (args[0] in self.commands or args[0] in ("--help", "-h", "--version"))
        if not known:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ails")
def main() -> None:
    """Streaming chat completions from the embedded model or any OpenAI-compatible server.

    \b
    ails "Hello, who are you?"          stream an answer from the default model
    ails -m openai/gpt-4o-mini "Hi"     another provider/model
    cat notes.txt | ails "summarise"    stdin is added to the prompt
    """


def _register() -> None:
    # Each subcommand lives in its own module; importing them is cheap (no
    # aiohttp, no model): the heavy imports happen inside the commands.
    from ails.cli.prompt import prompt_cmd

    main.add_command(prompt_cmd)


_register()

if __name__ == "__main__":
    main()
