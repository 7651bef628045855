"""``ails logs``: read the conversation log, search it, switch it off and on.

ails logs                 the last 3 exchanges
ails logs -n 10           the last 10 (-n 0: all)
ails logs -q word         full-text search of prompts and answers
ails logs -c / --cid ID   one conversation, whole
ails logs --json          the same, as JSON
ails logs off / on        stop or resume logging
ails logs status / path   where the log is, how much it holds
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from ails.cli._ui import note, style

if TYPE_CHECKING:
    from ails.store import Exchange, Store


def _store() -> Store:
    from ails import config
    from ails.store import Store

    return Store(config.db_path())


@click.group("logs", invoke_without_command=True)
@click.option("-n", "--count", type=click.IntRange(min=0), help="how many (default 3; 0 for all)")
@click.option("-q", "--query", help="full-text search of prompts and answers")
@click.option("-c", "--current", is_flag=True, help="the most recent conversation")
@click.option("--cid", metavar="ID", help="the conversation with this id (or a unique prefix)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def logs_cmd(
    ctx: click.Context,
    count: int | None,
    query: str | None,
    current: bool,
    cid: str | None,
    as_json: bool,
) -> None:
    """Show logged exchanges, newest last."""
    if ctx.invoked_subcommand is not None:
        return
    from ails.store import NoSuchConversation

    with _store() as store:
        conversation_id: str | None = None
        if cid is not None:
            try:
                conversation_id = store.find_conversation(cid)
            except NoSuchConversation as exc:
                raise click.BadParameter(str(exc), param_hint="'--cid'") from None
        elif current:
            conversation_id = store.latest_conversation()
            if conversation_id is None:
                raise click.ClickException("nothing is logged yet")
        # A whole conversation by default; a list or a search shows a few.
        limit = count if count is not None else (0 if conversation_id else 3)
        found = store.responses(limit=limit or None, query=query, conversation_id=conversation_id)
        if not store.logging_enabled():
            note("Logging is off (ails logs on resumes it).")
    if as_json:
        click.echo(json.dumps([e.to_json() for e in found], ensure_ascii=False, indent=2))
        return
    if not found:
        note("No matching exchanges." if query else "Nothing logged yet.")
        return
    for i, exchange in enumerate(found):
        if i:
            click.echo("")
        _print(exchange)


def _print(exchange: Exchange) -> None:
    when = _local_time(exchange.created)
    extra = ""
    if exchange.finish_reason == "interrupted":
        extra = "  (interrupted)"
    header = f"## {when}  {exchange.model}  {exchange.conversation_id}{extra}"
    click.echo(style(header, sys.stdout, bold=True))
    if exchange.system:
        for line in exchange.system.splitlines() or [""]:
            click.echo(style(f"system> {line}", sys.stdout, dim=True))
    for line in exchange.prompt.splitlines() or [""]:
        click.echo(style(f"> {line}", sys.stdout, fg="cyan"))
    click.echo(exchange.response.rstrip("\n"))


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


@logs_cmd.command("off")
def logs_off() -> None:
    """Stop logging exchanges."""
    with _store() as store:
        store.set_logging(False)
    note("Logging is off.")


@logs_cmd.command("on")
def logs_on() -> None:
    """Resume logging exchanges."""
    with _store() as store:
        store.set_logging(True)
    note("Logging is on.")


@logs_cmd.command("path")
def logs_path() -> None:
    """Print the path of the log database."""
    from ails import config

    click.echo(str(config.db_path()))


@logs_cmd.command("status")
def logs_status() -> None:
    """Whether logging is on, where the log is, how much it holds."""
    with _store() as store:
        enabled = store.logging_enabled()
        conversations, exchanges = store.counts()
        search = "none yet"
        if store.path.exists():
            search = "full-text (FTS5)" if store.has_fts() else "LIKE (this SQLite lacks FTS5)"
        click.echo(f"logging: {'on' if enabled else 'off'}")
        click.echo(f"database: {store.path}")
        click.echo(f"conversations: {conversations}")
        click.echo(f"exchanges: {exchanges}")
        click.echo(f"search: {search}")
