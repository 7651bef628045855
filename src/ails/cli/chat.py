"""``ails chat``: an interactive multi-turn session.

Line editing and history come from the standard library's ``readline`` (the
history file lives beside the logs, mode 0600): enough for a prompt line, and
it keeps prompt_toolkit (~60 ms of start-up and a dependency) out of the
install. When stdin is not a terminal, each line read is one turn, with no
prompt and no banner, so a chat can be scripted.

Keys: Ctrl-C during an answer stops it (the stream is closed, which closes the
upstream connection or stops the local model) and the session goes on; Ctrl-C
at the prompt clears the line; Ctrl-D or ``/exit`` leaves.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from ails.cli._exchange import Env, ask, complete_model, log_exchange, parse_options
from ails.cli._ui import EXIT_USAGE, error, exit_code_for, is_terminal, note
from ails.errors import AilsError

HELP = """\
/exit, /quit   leave (Ctrl-D too)
/reset         start a new conversation (forget the context)
/help          this list
\"\"\"            start or end a message of several lines
//text         send a message that starts with "/"
Ctrl-C stops an answer; the session goes on."""


@click.command("chat")
@click.option(
    "-m", "--model", metavar="MODEL", help="provider/model or alias", shell_complete=complete_model
)
@click.option("-s", "--system", help="system prompt")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="model option")
@click.option("-c", "--continue", "continue_", is_flag=True, help="continue the last conversation")
@click.option("--cid", metavar="ID", help="continue this conversation (an id or a unique prefix)")
@click.option("-n", "--no-log", is_flag=True, help="do not log this session")
def chat_cmd(
    model: str | None,
    system: str | None,
    options: tuple[str, ...],
    continue_: bool,
    cid: str | None,
    no_log: bool,
) -> None:
    """Chat with a model, turn by turn."""
    from ails import config
    from ails.store import NoSuchConversation, Store, history_messages

    params = parse_options(options)
    env = Env.load()
    store = Store(config.db_path())
    history: list[dict[str, Any]] = []
    conversation_id: str | None = None
    if cid is not None:
        try:
            conversation_id = store.find_conversation(cid)
        except NoSuchConversation as exc:
            raise click.BadParameter(str(exc), param_hint="'--cid'") from None
    elif continue_:
        conversation_id = store.latest_conversation()
    if conversation_id is not None:
        earlier = store.conversation(conversation_id)
        history = history_messages(earlier)
        if earlier:
            model = model or earlier[-1].model
            if system is None:
                system = next((e.system for e in reversed(earlier) if e.system), None)
    full_model = env.resolve(model)
    interactive = is_terminal(sys.stdin)
    history_file = _start_readline() if interactive else None
    if interactive:
        resumed = f", continuing {conversation_id}" if conversation_id else ""
        note(f"Chatting with {full_model}{resumed}. /help for commands, /exit or Ctrl-D to leave.")

    with env.client(full_model) as client:
        while True:
            text = _read_message(interactive)
            if text is None:
                break
            if not text.strip():
                continue
            if text.startswith("/") and not text.startswith("//"):
                command = text.split()[0].lower()
                if command in ("/exit", "/quit"):
                    break
                if command == "/reset":
                    conversation_id, history = None, []
                    note("New conversation.")
                elif command in ("/help", "/?"):
                    note(HELP)
                else:
                    note(f"Unknown command {command}; /help lists them.")
                continue
            if text.startswith("//"):
                text = text[1:]
            messages = [{"role": "system", "content": system}] if system else []
            messages += [*history, {"role": "user", "content": text}]
            try:
                answer = ask(
                    client, full_model, messages, params, ask_usage=env.asks_usage(full_model)
                )
            except AilsError as exc:
                if exit_code_for(exc) == EXIT_USAGE:
                    raise  # a -o option the provider refuses would fail every turn
                # Any other failed turn does not end the session: the upstream may come back.
                error(str(exc))
                continue
            if answer.interrupted:
                note("(answer stopped)")
                if not answer.text:
                    continue  # stopped before a word arrived: as if never asked
            # What was shown stays in the context, even an answer cut short.
            history += [
                {"role": "user", "content": text},
                {"role": "assistant", "content": answer.text},
            ]
            if not no_log:
                conversation_id = log_exchange(
                    store,
                    conversation_id=conversation_id,
                    model=full_model,
                    prompt=text,
                    system=system,
                    params=params,
                    answer=answer,
                )
    store.close()
    if history_file is not None:
        _save_readline(history_file)


def _read_message(interactive: bool) -> str | None:
    """One message: a line, or the lines between two ``\"\"\"``; None at the end."""
    try:
        line = input("> " if interactive else "")
        if line.strip() != '"""':
            return line
        lines: list[str] = []
        while True:
            more = input("... " if interactive else "")
            if more.strip() == '"""':
                return "\n".join(lines)
            lines.append(more)
    except EOFError:
        if interactive:
            click.echo("", err=True)  # leave the shell prompt on a line of its own
        return None
    except KeyboardInterrupt:
        # As in a shell: Ctrl-C at the prompt drops the line, not the session.
        click.echo("", err=True)
        return ""


def _start_readline() -> str | None:
    """Turn on line editing with a persistent history; None when unavailable."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline
        return None
    from ails import config

    path = config.history_path()
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    return str(path)


def _save_readline(path: str) -> None:
    import readline

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Prompts can be private: create the file for the user alone.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        readline.write_history_file(path)
        os.chmod(path, 0o600)
    except OSError:
        pass  # history is a convenience; never fail the session over it
