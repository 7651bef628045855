"""``ails prompt`` (the default command): send a prompt, stream the answer.

``ails "question"``, ``cat notes.txt | ails "summarise"``, ``ails -c "and then?"``.
The answer goes to stdout as it arrives; the exchange is logged (``ails logs``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ails.cli._exchange import Env, ask, complete_model, log_exchange, parse_options
from ails.cli._ui import EXIT_INTERRUPTED, is_terminal

MODEL_HELP = "provider/model or alias (default: config default_model, AILS_MODEL, local/default)"
OPTION_HELP = "model option: temperature, max_tokens, seed, stop, top_p... (repeatable)"


@click.command("prompt")
@click.argument("prompt", required=False)
@click.option("-m", "--model", metavar="MODEL", help=MODEL_HELP, shell_complete=complete_model)
@click.option("-s", "--system", help="system prompt")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help=OPTION_HELP)
@click.option("-c", "--continue", "continue_", is_flag=True, help="continue the last conversation")
@click.option("--cid", metavar="ID", help="continue this conversation (an id or a unique prefix)")
@click.option("--no-stream", is_flag=True, help="print the answer only when it is complete")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="OpenAI JSON: one chunk per line, or one completion with --no-stream",
)
@click.option("-n", "--no-log", is_flag=True, help="do not log this exchange")
@click.option(
    "--schema",
    metavar="SCHEMA",
    help="answer with JSON that validates: a JSON schema, a file holding one, or fields "
    "such as 'name, age int, bio: one line'",
)
def prompt_cmd(
    prompt: str | None,
    model: str | None,
    system: str | None,
    options: tuple[str, ...],
    continue_: bool,
    cid: str | None,
    no_stream: bool,
    as_json: bool,
    no_log: bool,
    schema: str | None,
) -> None:
    """Send PROMPT (and stdin, when piped) and stream the answer."""
    from ails import config
    from ails.cli._schema import load_schema, response_format
    from ails.store import NoSuchConversation, Store, history_messages

    text = read_prompt(prompt)
    params = parse_options(options)
    if schema is not None:
        params["response_format"] = response_format(load_schema(schema))
    env = Env.load()
    store = Store(config.db_path())
    history: list[dict[str, Any]] = []
    conversation_id: str | None = None
    if cid is not None or continue_:
        if cid is not None:
            try:
                conversation_id = store.find_conversation(cid)
            except NoSuchConversation as exc:
                raise click.BadParameter(str(exc), param_hint="'--cid'") from None
        else:
            conversation_id = store.latest_conversation()
            if conversation_id is None:
                raise click.ClickException("no conversation to continue yet: ask without -c")
        earlier = store.conversation(conversation_id)
        history = history_messages(earlier)
        # A continued conversation keeps its model and its system prompt unless
        # the command line names new ones.
        if earlier:
            model = model or earlier[-1].model
            if system is None:
                system = next((e.system for e in reversed(earlier) if e.system), None)
    full_model = env.resolve(model)
    if schema is not None:
        from ails.cli._schema import check_provider_takes_it

        check_provider_takes_it(full_model)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages += history
    messages.append({"role": "user", "content": text})
    with env.client(full_model) as client:
        answer = ask(
            client,
            full_model,
            messages,
            params,
            stream=not no_stream,
            as_json=as_json,
            ask_usage=env.asks_usage(full_model),
        )
    if not no_log and (answer.text or not answer.interrupted):
        log_exchange(
            store,
            conversation_id=conversation_id,
            model=full_model,
            prompt=text,
            system=system,
            params=params,
            answer=answer,
        )
    store.close()
    if answer.interrupted:
        click.echo("", err=True)
        sys.exit(EXIT_INTERRUPTED)


def read_prompt(prompt: str | None) -> str:
    """The prompt, then what was piped into stdin, separated by a blank line."""
    piped = ""
    if sys.stdin is not None and not is_terminal(sys.stdin):
        # Bytes decoded leniently: a stray binary byte must not end in a traceback.
        piped = sys.stdin.buffer.read().decode("utf-8", "replace")
    if prompt and piped.strip():
        return f"{prompt}\n\n{piped}"
    if prompt or piped.strip():
        return prompt or piped
    raise click.UsageError('give a prompt, e.g. ails "Hello, who are you?", or pipe text in')
