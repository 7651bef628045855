"""The ``ails`` command: ``ails "question"`` streams an answer.

``ails PROMPT`` is short for ``ails prompt PROMPT``; other subcommands sit
beside it, one module each. Answers go to stdout and nothing else does:
progress and errors go to stderr, so pipes stay clean. Exit codes: 0 ok,
1 runtime failure, 2 usage error, 130 interrupted (docs/cli.md).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ails._version import __version__


class DefaultGroup(click.Group):
    """A group whose unknown first word is the prompt of the default command."""

    default_command = "prompt"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and (ctx.resilient_parsing or sys.stdin is None or sys.stdin.isatty()):
            # No argument and nothing piped: the help, exit 0. During shell
            # completion the arguments stay as they are, so commands are offered.
            if not ctx.resilient_parsing:
                click.echo(ctx.get_help())
                ctx.exit(0)
            return super().parse_args(ctx, args)
        known = args and (args[0] in self.commands or args[0] in ("--help", "-h", "--version"))
        if not known:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] PROMPT")
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="       ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The default command's options are the ones every example uses (-m, -c,
        # -o...): list them here, not only under ``ails prompt --help``.
        prompt = self.commands.get(self.default_command)
        if prompt is not None:
            sub = click.Context(prompt, info_name=self.default_command, parent=ctx)
            records = [
                record
                for param in prompt.get_params(sub)
                if isinstance(param, click.Option)
                and "--help" not in param.opts
                and (record := param.get_help_record(sub)) is not None
            ]
            with formatter.section("Options of ails PROMPT"):
                formatter.write_dl(records)
        super().format_options(ctx, formatter)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """One-line errors and the documented exit codes (``ails.cli._ui.run_main``)."""
        from ails.cli._ui import run_main

        kwargs["standalone_mode"] = False
        run_main(lambda: super(DefaultGroup, self).main(*args, **kwargs))


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ails")
def main() -> None:
    """Streaming chat completions from the embedded model or any OpenAI-compatible server.

    \b
    ails "Hello, who are you?"          stream an answer from the default model
    ails -m openai/gpt-4o-mini "Hi"     another provider/model
    cat notes.txt | ails "summarise"    stdin is added to the prompt
    ails -c "and in French?"            continue the last conversation
    ails chat                           an interactive session
    """


def _register() -> None:
    # Each subcommand lives in its own module; importing them is cheap (no
    # aiohttp, no model): the heavy imports happen inside the commands.
    from ails.cli.cache import cache_cmd
    from ails.cli.chat import chat_cmd
    from ails.cli.completion import completion_cmd
    from ails.cli.config import config_cmd
    from ails.cli.keys import keys_cmd
    from ails.cli.logs import logs_cmd
    from ails.cli.models import models_cmd, providers_cmd
    from ails.cli.prompt import prompt_cmd
    from ails.cli.serve import serve_cmd

    main.add_command(prompt_cmd)
    main.add_command(chat_cmd)
    main.add_command(logs_cmd)
    main.add_command(models_cmd)
    main.add_command(providers_cmd)
    main.add_command(keys_cmd)
    main.add_command(config_cmd)
    main.add_command(cache_cmd)
    main.add_command(completion_cmd)
    main.add_command(serve_cmd)


_register()

if __name__ == "__main__":
    main()
