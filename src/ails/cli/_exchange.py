"""One exchange with a model, the way ``ails`` and ``ails chat`` both do it:
settings and keys, the model name, ``-o`` options, the client, the answer
written to stdout as it streams (spinner on stderr until it starts), the log.

Heavy imports (the client and with it aiohttp, sqlite3) happen inside the
functions, when a request is really made.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import click

from ails import config
from ails.cli._ui import Spinner, warn

if TYPE_CHECKING:
    from ails._sync import Client
    from ails.providers.base import Provider, QueueWait
    from ails.store import Store
    from ails.types import Chunk, Completion, Usage

#: ``-o`` options with a known type; others are sent as given (a JSON value, or
#: a string) to providers that accept extra fields, and refused by the others.
OPTION_TYPES: dict[str, Callable[[str], Any]] = {
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "seed": int,
    "stop": str,
    "presence_penalty": float,
    "frequency_penalty": float,
    "user": str,
}


def parse_options(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("temperature=0.2", "stop=END", "stop=###")`` -> request parameters.
    ``stop`` may be repeated (a list); any other repeat keeps the last value."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="'-o'")
        if key in ("model", "messages", "stream", "stream_options", "n"):
            raise click.BadParameter(f"{key!r} cannot be set with -o", param_hint="'-o'")
        convert = OPTION_TYPES.get(key)
        value: Any
        if convert is None:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        else:
            try:
                value = convert(raw)
            except ValueError:
                kind = "a number" if convert is float else "a whole number"
                raise click.BadParameter(
                    f"{key}={raw!r}: expected {kind}", param_hint="'-o'"
                ) from None
        if key == "stop" and "stop" in params:
            prev = params["stop"]
            value = [*(prev if isinstance(prev, list) else [prev]), value]
        params[key] = value
    return params


@dataclass
class Env:
    """The settings every command that talks to a model needs, read once."""

    settings: config.Settings
    default_model: str
    default_source: str
    _keys: dict[str, str] | None = field(default=None, repr=False)

    @classmethod
    def load(cls) -> Env:
        settings = config.load()
        model, source = config.default_model(settings)
        return cls(settings=settings, default_model=model, default_source=source)

    def stored_keys(self) -> dict[str, str]:
        if self._keys is None:
            from ails import keys

            path = config.keys_path()
            self._keys = keys.load(path)
            if self._keys and keys.too_open(path):
                warn(f"{path} can be read by others; run: chmod 600 {path}")
        return self._keys

    def key_for(self, provider: str) -> tuple[str | None, str | None]:
        return config.resolve_key(provider, self.stored_keys, self.settings)

    def known(self, provider: str) -> bool:
        """A provider named in the config file, or a registered type."""
        from ails.providers import registry

        return provider in self.settings.providers or registry.is_provider(provider)

    def provider_type(self, provider: str) -> type[Provider]:
        from ails import provider_config
        from ails.providers import registry

        table = self.settings.providers.get(provider, {})
        return registry.provider_class(provider_config.type_of(provider, table))

    def resolve(self, name: str | None) -> str:
        """A full ``provider/model`` name for ``-m`` (alias, bare name, or full),
        by the library's rule (:func:`ails.providers.registry.resolve_model`).

        Stricter than the library on purpose: ``-m opnai/gpt-4o`` is a usage
        error naming the unknown provider, not a bare model name sent to the
        default provider. Write ``openai/meta-llama/Llama-3`` for a model whose
        own name has a slash. A provider name alone means its default model.
        """
        from ails.providers import registry

        given = name or self.default_model
        resolved = registry.resolve_alias(given, self.settings.aliases)
        provider, model = registry.resolve_model(resolved, configured=self.settings.providers)
        if provider is None:
            head, sep, _ = resolved.partition("/")
            if sep or self.known(head):
                if not self.known(head):
                    raise click.UsageError(self._unknown(head, given))
                provider, model = head, ""
            else:
                default_provider = self.default_model.partition("/")[0]
                if not self.known(default_provider):
                    raise click.UsageError(self._unknown(default_provider, self.default_model))
                return f"{default_provider}/{resolved}"
        if not model:
            default = self.provider_type(provider).default_model
            if not default:
                raise click.UsageError(f"the {provider} provider needs a model: {provider}/MODEL")
            model = default
        return f"{provider}/{model}"

    def asks_usage(self, model: str) -> bool:
        """Whether ``model``'s provider honours ``stream_options``: then a
        stream is asked for its token usage, which the log wants."""
        accepted, _ = self.provider_type(model.partition("/")[0]).accepted_params()
        return "stream_options" in accepted

    def provider_names(self) -> list[str]:
        """Registered types, then the names the config file adds."""
        from ails.providers import registry

        return list(dict.fromkeys([*registry.names(), *self.settings.providers]))

    def _unknown(self, provider: str, name: str) -> str:
        where = ""
        if name == self.default_model:
            where = f" (the default model, from {self.default_source})"
        return (
            f"unknown provider {provider!r} in model {name!r}{where}; "
            f"known providers: {', '.join(self.provider_names())}"
        )

    def provider_kwargs(self, provider: str) -> dict[str, Any]:
        """The settings to build ``provider`` with: its config table (its
        ``type`` included, less what the environment overrides) and its key."""
        settings = config.provider_settings(provider, self.settings)
        if "api_key" in self.provider_type(provider).settings():
            key, _ = self.key_for(provider)
            if key:
                settings["api_key"] = key
        return settings

    def client(self, model: str) -> Client:
        """A client for ``model``'s provider with its config settings and key."""
        from ails._sync import Client

        provider = model.partition("/")[0]
        return Client(
            model=self.default_model,
            aliases=self.settings.aliases,
            providers={provider: self.provider_kwargs(provider)},
        )


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for ``-m``: aliases, the default, ``provider/`` prefixes."""
    try:
        env = Env.load()
    except Exception:  # completion must never print an error into the shell
        return []
    names = [*env.settings.aliases, env.default_model, *(f"{p}/" for p in env.provider_names())]
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


# -- the answer -----------------------------------------------------------------


@dataclass
class Answer:
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    interrupted: bool = False
    duration_ms: int = 0


def ask(
    client: Client,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    *,
    stream: bool = True,
    as_json: bool = False,
    ask_usage: bool = False,
    out: TextIO | None = None,
) -> Answer:
    """Send one request and write the answer to ``out`` (stdout) as it comes.

    ``ask_usage``: the provider honours ``stream_options`` (:meth:`Env.asks_usage`).
    Ctrl-C returns what arrived so far with ``interrupted`` set, after closing
    the stream: that closes the upstream connection (or stops the local model),
    so generation stops too. Errors (``AilsError``) propagate.
    """
    out = out if out is not None else sys.stdout
    if stream and not as_json and ask_usage and "stream_options" not in params:
        # OpenAI-style servers send a stream's token usage only when asked; the
        # log wants it. (With --json the caller sees exactly what it asked for.)
        params = {**params, "stream_options": {"include_usage": True}}
    answer = Answer()
    parts: list[str] = []
    started = time.monotonic()
    spinner = Spinner(model).start()
    try:
        if stream:
            from ails.providers.base import QueueWait
            from ails.wire import chunk_texts

            with client.chat.completions.create(
                model=model, messages=messages, stream=True, **params
            ) as chunks:
                for batch in chunks.batches():
                    if type(batch) is QueueWait:  # a busy model: say so while waiting
                        spinner.set_label(model if batch.started else waiting_label(batch))
                        continue
                    for chunk in batch:
                        _take(answer, parts, chunk, spinner, out, as_json)
                    if as_json:
                        # The chunks as the backend sent them (ails.wire).
                        spinner.stop()
                        out.writelines(f"{line}\n" for line in chunk_texts(batch))
                    out.flush()
        else:
            done = client.chat.completions.create(model=model, messages=messages, **params)
            spinner.stop()
            choice = done.choices[0] if done.choices else None
            content = choice.message.content if choice is not None else None
            text = content if isinstance(content, str) else ""
            parts.append(text)
            answer.finish_reason = choice.finish_reason if choice is not None else None
            answer.usage = done.usage
            out.write(_completion_line(done) if as_json else text)
    except KeyboardInterrupt:
        answer.interrupted = True
    finally:
        spinner.stop()
        answer.text = "".join(parts)
        answer.duration_ms = int((time.monotonic() - started) * 1000)
    if not as_json and answer.text and not answer.text.endswith("\n"):
        out.write("\n")
    out.flush()
    return answer


def waiting_label(wait: QueueWait) -> str:
    """The spinner's words while the request waits for a busy model."""
    return f"waiting for the model ({wait.ahead} ahead)"


def _take(
    answer: Answer,
    parts: list[str],
    chunk: Chunk,
    spinner: Spinner,
    out: TextIO,
    as_json: bool,
) -> None:
    if chunk.usage is not None:
        answer.usage = chunk.usage
    content = None
    if chunk.choices:
        choice = chunk.choices[0]
        content = choice.delta.content
        if choice.finish_reason is not None:
            answer.finish_reason = choice.finish_reason
        if content:
            parts.append(content)
    if content and not as_json:
        spinner.stop()  # cleared before the first token is written
        out.write(content)


def _completion_line(done: Completion) -> str:
    from ails.wire import completion_json

    return completion_json(done).decode() + "\n"


def log_exchange(
    store: Store,
    *,
    conversation_id: str | None,
    model: str,
    prompt: str,
    system: str | None,
    params: dict[str, Any],
    answer: Answer,
) -> str | None:
    """Log the exchange when logging is on; return its conversation id (the
    given one, a new one, or ``None`` when not logged). A failure to log is a
    warning: the answer was already delivered."""
    import sqlite3

    from ails.store import Exchange

    try:
        if not store.logging_enabled():
            return conversation_id
        usage = answer.usage
        logged = store.log(
            Exchange(
                conversation_id=conversation_id,
                model=model,
                prompt=prompt,
                system=system,
                options=params,
                response=answer.text,
                finish_reason="interrupted" if answer.interrupted else answer.finish_reason,
                prompt_tokens=usage.prompt_tokens if usage is not None else None,
                completion_tokens=usage.completion_tokens if usage is not None else None,
                duration_ms=answer.duration_ms,
            )
        )
    except (sqlite3.Error, OSError) as exc:
        warn(f"the exchange was not logged: {exc}")
        return conversation_id
    return logged.conversation_id
