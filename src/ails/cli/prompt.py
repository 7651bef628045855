"""``ails prompt`` (the default command): send a prompt, stream the answer."""

from __future__ import annotations

import sys
from typing import Any

import click


@click.command("prompt")
@click.argument("prompt", required=False)
@click.option("-m", "--model", help="provider/model (default: local/default, or AILS_MODEL)")
@click.option("-s", "--system", help="system prompt")
@click.option("--max-tokens", type=int, help="limit the answer, in tokens")
@click.option("--temperature", type=float)
@click.option("--no-stream", is_flag=True, help="print the answer only when it is complete")
def prompt_cmd(
    prompt: str | None,
    model: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    no_stream: bool,
) -> None:
    """Send PROMPT (and stdin, when piped) and stream the answer."""
    text = _read_prompt(prompt)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": text})
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    _run(model, messages, params, stream=not no_stream)


def _read_prompt(prompt: str | None) -> str:
    piped = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if prompt and piped:
        return f"{prompt}\n\n{piped}"
    if prompt or piped:
        return prompt or piped
    raise click.UsageError('give a prompt, e.g. ails "Hello, who are you?", or pipe text in')


def _run(
    model: str | None, messages: list[dict[str, Any]], params: dict[str, Any], *, stream: bool
) -> None:
    from ails._sync import Client
    from ails.errors import AilsError

    out = sys.stdout
    try:
        with Client() as client:
            if stream:
                with client.chat.completions.create(
                    model=model, messages=messages, stream=True, **params
                ) as chunks:
                    for piece in chunks.text():
                        out.write(piece)
                        out.flush()
            else:
                done = client.chat.completions.create(model=model, messages=messages, **params)
                out.write(done.choices[0].message.content or "" if done.choices else "")
        out.write("\n")
        out.flush()
    except AilsError as exc:
        click.echo(f"ails: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("", err=True)
        sys.exit(130)
