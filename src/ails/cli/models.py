"""``ails models`` and ``ails providers``: what can answer, and is it set up.

Each provider is shown with the seed's metadata (url, supports_stream,
needs_auth, params) and whether it is configured: it can be built from its
settings, the local one has its runtime installed, and one that needs a key
has one (or points at a server other than the official one, which may need
none). Only ``--remote`` touches the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ails.cli._exchange import Env
from ails.cli._ui import warn

if TYPE_CHECKING:
    from ails.providers.base import Provider


#: Seconds to wait for a provider's model list.
REMOTE_TIMEOUT = 15.0


@dataclass
class Status:
    name: str
    cls: type[Provider] | None
    configured: bool
    reason: str
    base_url: str | None = None
    key_source: str | None = None
    key: str | None = None
    settings: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        from ails import config

        meta: dict[str, Any] = {"name": self.name}
        if self.cls is not None:
            meta.update(self.cls.metadata())
        meta["configured"] = self.configured
        meta["status"] = self.reason
        if self.base_url is not None:
            meta["base_url"] = self.base_url
        if self.cls is not None:
            meta["settings"] = [s for s in self.cls.settings() if s != "timeouts"]
        meta["config"] = config.masked(self.settings or {})
        meta["key"] = (
            {"source": self.key_source, "value": config.mask(self.key)} if self.key else None
        )
        return meta


def provider_status(env: Env, name: str) -> Status:
    from ails import config
    from ails.errors import AilsError
    from ails.providers import registry

    try:
        cls = registry.provider_class(name)
    except AilsError as exc:
        return Status(name, None, False, f"cannot be loaded: {exc}")
    settings = config.provider_settings(name, env.settings)
    key, source = env.key_for(name) if "api_key" in cls.settings() else (None, None)
    try:
        # Building a provider does no I/O (sessions and models are opened on
        # first use), so this is the real check of the settings.
        instance = cls(**env.provider_kwargs(name))
    except (AilsError, TypeError) as exc:
        return Status(name, cls, False, str(exc), key_source=source, key=key, settings=settings)
    base_url = getattr(instance, "base_url", None)
    status = Status(name, cls, True, "ready", base_url, source, key, settings)
    if name == "local":
        import importlib.util

        if importlib.util.find_spec("xllamacpp") is None:
            status.configured = False
            from ails.local.weights import INSTALL_HINT

            status.reason = f"runtime not installed: {INSTALL_HINT}"
    elif cls.needs_auth and not key:
        if base_url is not None and base_url == cls.url:
            status.configured = False
            hints = " or ".join(config.key_env_names(name))
            status.reason = f"needs a key: ails keys set {name} (or set {hints})"
        else:
            status.reason = "ready (no key: the server must not need one)"
    elif key:
        status.reason = f"ready (key from {source})"
    return status


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@click.command("models")
@click.option("--remote", is_flag=True, help="also ask configured remote providers (network)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def models_cmd(remote: bool, as_json: bool) -> None:
    """List the models ails knows, the default and the aliases."""
    from ails.providers import registry

    env = Env.load()
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        status = provider_status(env, name)
        cls = status.cls
        known = list(cls.models) if cls is not None else []
        found = [(m, "built-in") for m in known]
        if remote and status.configured and cls is not None and cls.url is not None:
            found += [(m, "remote") for m in _remote_models(env, name) if m not in known]
        elif cls is not None and not known:
            found.append(("*", "any"))
        for model, source in found:
            full = f"{name}/{model}"
            rows.append(
                {
                    "model": full,
                    "provider": name,
                    "source": source,
                    "default": full == env.default_model,
                    "configured": status.configured,
                }
            )
    aliases = dict(env.settings.aliases)
    if as_json:
        data = {"default": env.default_model, "models": rows, "aliases": aliases}
        click.echo(json.dumps(data, indent=2))
        return
    width = max((len(r["model"]) for r in rows), default=10)
    for row in rows:
        label = ""
        if row["default"]:
            label = "default"
        elif row["source"] == "any":
            label = "any model the endpoint serves (ails models --remote lists them)"
        click.echo(f"{row['model']:<{width}}  {label}".rstrip())
    if env.default_model not in {r["model"] for r in rows}:
        click.echo(f"default: {env.default_model} (from {env.default_source})")
    if aliases:
        click.echo("aliases:")
        for alias, target in aliases.items():
            click.echo(f"  {alias} = {target}")


def _remote_models(env: Env, name: str) -> list[str]:
    """What the provider's endpoint says it serves; a warning when it cannot."""
    import asyncio

    from ails.client import AsyncClient

    async def fetch() -> list[str]:
        async with AsyncClient(providers={name: env.provider_kwargs(name)}) as client:
            return await asyncio.wait_for(client.pool.get(name).list_models(), REMOTE_TIMEOUT)

    try:
        return sorted(asyncio.run(fetch()))
    except Exception as exc:
        # Best effort, one provider at a time: a provider's list_models may
        # raise its transport's own errors (aiohttp's), not only AilsError.
        warn(f"{name}: cannot list models: {exc or type(exc).__name__}")
        return []


@click.group("providers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def providers_cmd(ctx: click.Context, as_json: bool) -> None:
    """List providers, their metadata, and whether each is configured."""
    if ctx.invoked_subcommand is not None:
        return
    from ails.providers import registry

    env = Env.load()
    statuses = [provider_status(env, name) for name in registry.names()]
    if as_json:
        click.echo(json.dumps([s.metadata() for s in statuses], indent=2))
        return
    table = [("NAME", "CONFIGURED", "STREAM", "AUTH", "URL")]
    for s in statuses:
        url = s.base_url or (s.cls.url if s.cls is not None else None) or "-"
        stream = _yes(s.cls.supports_stream) if s.cls is not None else "-"
        auth = _yes(s.cls.needs_auth) if s.cls is not None else "-"
        table.append((s.name, _yes(s.configured), stream, auth, url))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:4])]
        click.echo("  ".join([*cells, row[4]]))
    for s in statuses:
        if not s.configured:
            click.echo(f"{s.name}: {s.reason}", err=True)


@providers_cmd.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def providers_show(name: str, as_json: bool) -> None:
    """Everything about one provider: metadata, params, settings, key."""
    from ails.providers import registry

    if not registry.is_provider(name):
        raise click.BadParameter(
            f"unknown provider {name!r}; known: {', '.join(registry.names())}",
            param_hint="'NAME'",
        )
    meta = provider_status(Env.load(), name).metadata()
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    order = (
        "name",
        "configured",
        "status",
        "url",
        "base_url",
        "models",
        "default_model",
        "supports_stream",
        "needs_auth",
        "params",
        "settings",
        "config",
        "key",
    )
    for field in order:
        if field not in meta:
            continue
        value: Any = meta[field]
        shown: str
        if field == "key":
            shown = f"{value['value']} (from {value['source']})" if value else "none"
        elif isinstance(value, bool):
            shown = _yes(value)
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value) or "-"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        else:
            shown = "-" if value is None else str(value)
        click.echo(f"{field}: {shown}")
