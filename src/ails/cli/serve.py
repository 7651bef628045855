"""``ails serve``: run the OpenAI-compatible gateway (docs/gateway.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ails.server.config import GatewayConfig


class _RedactingFilter(logging.Filter):
    """Last line of defence: no configured secret and no upstream address
    (shown as ``<upstream0>``) reaches the log, whatever logged it: the
    library's router logs its retries with the provider's own error text."""

    def __init__(self, redact: Any) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redact.secrets or self.redact.names:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info:  # a traceback's messages may quote a secret too
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file")
@click.option("--host", help="address to bind (default 127.0.0.1)")
@click.option("--port", type=int, help="port (default 8000; 0 picks a free one)")
@click.option(
    "--upstream",
    multiple=True,
    metavar="URL",
    help="OpenAI-compatible base URL (repeatable; the order is the fallback order)",
)
@click.option(
    "--upstream-key",
    multiple=True,
    metavar="KEY",
    help="key for the upstreams: one for all, or one per --upstream in order",
)
@click.option(
    "--upstream-key-file",
    type=click.Path(dir_okay=False),
    help="file of upstream keys, one per line (keeps them out of `ps`)",
)
@click.option("--local", is_flag=True, help="also serve the embedded model next to upstreams")
@click.option(
    "--alias",
    multiple=True,
    metavar="NAME=MODEL",
    help="another name for a served model, e.g. gpt-3.5-turbo=local/default",
)
@click.option(
    "--api-key",
    multiple=True,
    metavar="KEY",
    help="a key clients must send as 'Authorization: Bearer KEY' (repeatable)",
)
@click.option("--api-key-file", type=click.Path(dir_okay=False), help="file of client keys")
@click.option(
    "--allow-signed",
    is_flag=True,
    help="accept the ails signed protocol from clients without a key",
)
@click.option(
    "--signed-quota",
    metavar="N/PERIOD",
    help="anonymous signed requests per client address, e.g. 15/day",
)
@click.option(
    "--signature-window",
    type=float,
    metavar="SECONDS",
    help="how far a signed timestamp may be from now (default 300)",
)
@click.option(
    "--trusted-proxy",
    multiple=True,
    metavar="IP",
    help="a reverse proxy whose X-Forwarded-For (last hop) gives the client address",
)
@click.option(
    "--allowed-host",
    multiple=True,
    metavar="HOST",
    help="a host name clients may use besides localhost and IP addresses (repeatable; * for any)",
)
@click.option(
    "--cors-origin",
    multiple=True,
    metavar="ORIGIN",
    help="a web origin (https://app.example.com) whose pages may call the API (repeatable)",
)
@click.option("--max-tokens-cap", type=int, help="lower every request's max_tokens to this")
@click.option("--max-body-bytes", type=int, help="largest request body (default 4 MiB)")
@click.option("--max-messages", type=int, help="most messages in a request (default 2048)")
@click.option("--max-retries", type=int, help="retries per backend before the answer starts")
@click.option("--connect-timeout", type=float, help="seconds to connect to an upstream")
@click.option(
    "--idle-timeout",
    type=float,
    help="seconds an upstream may stay silent (first byte and between chunks)",
)
@click.option("--timeout", type=float, help="seconds for a whole upstream answer")
@click.option(
    "--models-refresh",
    type=float,
    help="least seconds between upstream model-list refreshes (default 30)",
)
@click.option(
    "--client-header-timeout",
    type=float,
    metavar="SECONDS",
    help="seconds a client has to send a request's head (default 10; 0: no limit)",
)
@click.option(
    "--client-body-timeout",
    type=float,
    metavar="SECONDS",
    help="seconds a client has to send a request's body after its head (default 30)",
)
@click.option(
    "--keepalive-timeout",
    type=float,
    metavar="SECONDS",
    help="seconds a client connection may stay idle between requests (default 75)",
)
@click.option("--max-connections", type=int, help="open client connections in all (default 4096)")
@click.option(
    "--max-connections-per-client",
    type=int,
    help="open connections per client address (default 256; trusted proxies exempt)",
)
@click.option(
    "--max-anonymous-body-bytes",
    type=int,
    help="largest body of a request without a valid key under --allow-signed (default 256 KiB)",
)
@click.option(
    "--redis",
    metavar="URL",
    help="share replay cache, quotas, rate limits and cache with other replicas "
    "(redis://HOST:PORT/DB; docs/scaling.md)",
)
@click.option("--redis-prefix", metavar="PREFIX", help="prefix of every Redis key (default ails:)")
@click.option(
    "--redis-timeout", type=float, metavar="SECONDS", help="Redis connect/command timeout (0.25)"
)
@click.option(
    "--redis-failure",
    type=click.Choice(["closed", "open"]),
    help="while Redis is down: refuse what needs it with 503 (closed, default) or skip the check",
)
@click.option(
    "--cache-ttl", type=float, metavar="SECONDS", help="cache temperature-0 answers (0: off)"
)
@click.option("--rpm", type=int, help="requests per minute of every API key (0: no limit)")
@click.option("--tpm", type=int, help="tokens per minute of every API key (0: no limit)")
@click.option("--no-access-log", is_flag=True, help="no line per request (for benchmarks)")
@click.option("--no-ui", is_flag=True, help="no chat page at / (docs/ui.md)")
@click.option(
    "--insecure-public", is_flag=True, help="allow binding beyond loopback without any API key"
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def serve_cmd(config_file: str | None, log_level: str, **options: Any) -> None:
    """Serve chat completions over HTTP, OpenAI-compatible.

    \b
    ails serve                                   the embedded model on 127.0.0.1:8000
    ails serve --upstream http://127.0.0.1:8080/v1 --upstream-key-file keys.txt
    ails serve --allow-signed --alias gpt-3.5-turbo=local/default
    """
    from ails.errors import AilsError, ConfigError
    from ails.server.config import build_config

    try:
        config = build_config(file=config_file, cli=options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _setup_logging(log_level, config)
    try:
        asyncio.run(_serve(config))
    except AilsError as exc:
        click.echo(f"ails: error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # the port is taken, the address is not ours
        click.echo(f"ails: error: cannot listen on {config.host}:{config.port}: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


def _setup_logging(level: str, config: GatewayConfig) -> None:
    from ails.server.errors import Redactor
    from ails.server.security import ParseErrorLogFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # First: a request aiohttp cannot parse is logged without quoting its line.
    handler.addFilter(ParseErrorLogFilter())
    redact = Redactor(config.secrets(), names=config.upstream_addresses())
    handler.addFilter(_RedactingFilter(redact))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's own access logger would log a second line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve(config: GatewayConfig) -> None:
    from aiohttp import web

    from ails.server import AccessLogger, build_app, create_gateway
    from ails.server.connections import ConnectionGuard
    from ails.server.listener import listen, raise_fd_limit
    from ails.server.security import MAX_FIELD_SIZE, MAX_HEADERS, MAX_LINE_SIZE

    gateway = create_gateway(config)
    # Deadlines and caps on client connections (docs/gateway.md); its counts
    # of refusals live in gateway.connections.stats.
    guard = gateway.connections = ConnectionGuard(
        config.connection_limits(), trusted_proxies=config.trusted_proxies
    )
    _check_fd_limit(raise_fd_limit(config.max_connections + 256), config.max_connections)
    asyncio.get_running_loop().set_exception_handler(guard.handle_loop_exception)
    try:
        # Loads the embedded model when it is served: the runtime prints its own
        # "ails: loading model ..." line (and, the first time, "joining model parts").
        await gateway.start()
        app = build_app(gateway, ui=config.ui)
        app.middlewares.insert(0, guard.middleware)  # outermost: it marks each request
        runner = web.AppRunner(
            app,
            # A client that disconnects cancels its handler, even while it waits
            # for an upstream: the upstream request is closed at once.
            handler_cancellation=True,
            access_log=logging.getLogger("ails.access") if config.access_log else None,
            access_log_class=AccessLogger,
            shutdown_timeout=5.0,
            keepalive_timeout=config.keepalive_timeout,
            # Request line and header line limits, explicit (docs/reliability.md).
            max_line_size=MAX_LINE_SIZE,
            max_field_size=MAX_FIELD_SIZE,
            max_headers=MAX_HEADERS,
        )
        await runner.setup()
        try:
            await listen(runner, guard, config.host, config.port, backlog=1024)
            # Everything alive now (modules, the model table, the app) lives as
            # long as the process: out of the collector's sight, full collections
            # stop walking it on every request burst (~15% CPU per request, A/B).
            gc.freeze()
            host, port = runner.addresses[0][:2]
            names = gateway.router.model_names()
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            click.echo(
                f"ails: serving {_url(host, port)} (models: {shown or 'none yet'})", err=True
            )
            await _wait_for_signal()
            click.echo("ails: shutting down", err=True)
        finally:
            await runner.cleanup()
    finally:
        await gateway.aclose()


def _check_fd_limit(limits: tuple[int, int], max_connections: int) -> None:
    soft = limits[0]
    if 0 <= soft < max_connections + 64:
        logging.getLogger("ails.server").warning(
            "the open-file limit (%d) is below --max-connections (%d): raise `ulimit -n`, "
            "or lower --max-connections, or new connections fail before the cap",
            soft,
            max_connections,
        )


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
