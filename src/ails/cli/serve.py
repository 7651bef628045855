"""``ails serve``: run the OpenAI-compatible gateway (docs/gateway.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ails.server.config import GatewayConfig


def gateway_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """A click option for every declared gateway option (server/options.py):
    a flag per scalar, a repeatable flag per list, ``--x/--no-x`` per switch;
    ``None`` (or an empty tuple) when not given, so lower layers show through."""
    from ails.server.option_spec import env_of, flag_of
    from ails.server.options import declared

    for name, opt in reversed(list(declared())):
        flag = flag_of(name, opt)
        if not flag:
            continue
        dest = flag.replace("-", "_")
        env = env_of(name, opt)
        help_text = opt.help + (f" [env {env}]" if env else "")
        if opt.kind is bool:
            f = click.option(f"--{flag}/--no-{flag}", dest, default=None, help=help_text)(f)
            continue
        kind: Any = click.Choice(list(opt.choices)) if opt.choices else opt.kind
        if opt.metavar == "PATH":
            kind = click.Path(dir_okay=False)
        f = click.option(
            f"--{flag}",
            dest,
            type=kind,
            multiple=opt.multiple,
            metavar=opt.metavar,
            help=help_text,
        )(f)
    return f


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file")
@gateway_options
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
        run_on(loop_factory(config.loop), _serve(config))
    except ConfigError as exc:  # a backend that cannot be built: a usage error too
        raise click.UsageError(str(exc)) from None
    except AilsError as exc:
        click.echo(f"ails: error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # the port is taken, the address is not ours
        click.echo(f"ails: error: cannot listen on {config.host}:{config.port}: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``--loop``: uvloop where installed (``auto``), or the plain loop; asking
    for uvloop where it is not installed is a usage error."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise click.UsageError(
                "--loop uvloop: uvloop is not installed (pip install uvloop)"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_on(
    factory: Callable[[], asyncio.AbstractEventLoop] | None, main: Coroutine[Any, Any, None]
) -> None:
    """``asyncio.run`` on the loop ``factory`` makes (the default loop: None)."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)
    else:  # pragma: no cover - Python 3.10 has no loop_factory
        if factory is not None:
            policy = asyncio.DefaultEventLoopPolicy()
            policy.new_event_loop = factory  # type: ignore[method-assign]
            asyncio.set_event_loop_policy(policy)
        asyncio.run(main)


def _setup_logging(level: str, config: GatewayConfig) -> None:
    from ails.server.errors import Redactor
    from ails.server.logsink import LogSink, TextFormatter
    from ails.server.security import ParseErrorLogFilter

    # Redacts every line; buffers the access lines (server/logsink.py).
    handler = LogSink(sys.stderr, Redactor(config.secrets(), names=config.upstream_addresses()))
    if config.log_format == "json":
        from ails.local import weights
        from ails.server.logformat import JsonFormatter

        handler.setFormatter(JsonFormatter(handler.redact))
        # The embedded model's load progress, a log line too.
        weights.progress_sink = logging.getLogger("ails.local").info
    else:
        handler.setFormatter(TextFormatter())
    # First: a request aiohttp cannot parse is logged without quoting its line.
    handler.addFilter(ParseErrorLogFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's own access logger would log a second line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _say(config: GatewayConfig, text: str) -> None:
    """A line about the server itself (starting, serving, stopping): on stderr
    as it is, or with ``--log-format json`` as a log line like every other."""
    if config.log_format == "json":
        logging.getLogger("ails.serve").info("%s", text)
    else:
        click.echo(text, err=True)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve(config: GatewayConfig) -> None:
    from aiohttp import web

    from ails.server.app import AccessLogger, build_app
    from ails.server.backends import check_self_loop
    from ails.server.build import create_gateway
    from ails.server.connections import ConnectionGuard
    from ails.server.listener import listen, raise_fd_limit
    from ails.server.logformat import JsonAccessLogger, JsonFormatter
    from ails.server.logsink import LogSink
    from ails.server.security import MAX_FIELD_SIZE, MAX_HEADERS, MAX_LINE_SIZE

    gateway = create_gateway(config)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LogSink):
            handler.redact = gateway.redact  # now with every backend's key and address
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.redact = gateway.redact
    # Deadlines and caps on client connections (docs/gateway.md); its counts
    # of refusals live in gateway.connections.stats.
    guard = gateway.connections = ConnectionGuard(
        config.connection_limits(), trusted_proxies=config.trusted_proxies
    )
    _check_fd_limit(raise_fd_limit(config.max_connections + 256), config.max_connections)
    asyncio.get_running_loop().set_exception_handler(guard.handle_loop_exception)
    names = [b.name for b in gateway.router.backends]
    loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    _say(config, f"ails: starting {', '.join(names)}... (event loop: {loop})")
    app = build_app(gateway, ui=config.ui)
    runner = web.AppRunner(
        # The app opens the gateway's backends in setup() and closes them in
        # cleanup() (its cleanup context).
        app,
        # A client that disconnects cancels its handler, even while it waits
        # for an upstream: the upstream request is closed at once.
        handler_cancellation=True,
        access_log=logging.getLogger("ails.access") if config.access_log else None,
        access_log_class=JsonAccessLogger if config.log_format == "json" else AccessLogger,
        shutdown_timeout=5.0,
        keepalive_timeout=config.keepalive_timeout,
        # Request line and header line limits, explicit (docs/reliability.md).
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    metrics_runner: web.AppRunner | None = None
    try:
        site = await listen(runner, guard, config.host, config.port, backlog=1024)
        host, port = site.address
        check_self_loop(gateway.router.backends, config.host, port)  # port 0: now known
        if config.metrics_port is not None and gateway.metrics is not None:
            metrics_runner = await _serve_metrics(gateway.metrics, config)
        # Everything alive now (modules, the model table, the app) lives as
        # long as the process: out of the collector's sight, full collections
        # stop walking it on every request burst (~15% CPU per request, A/B).
        gc.freeze()
        # A request allocates a few thousand objects and frees almost all of
        # them by reference counting; at the default threshold (700) the young
        # generation is collected several times per request, each time walking
        # the objects of every request in flight and promoting them. Collected
        # less often, the work per request falls (4.8% of the instructions per
        # request at the default, measured) and cycles are still collected.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        names = gateway.router.model_names()
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        _say(config, f"ails: serving {_url(host, port)} (models: {shown or 'none yet'})")
        await _wait_for_signal()
        _flush_logs()  # the buffered access lines before the line that says so
        _say(config, "ails: shutting down")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        _flush_logs()  # the requests that were still running


def _flush_logs() -> None:
    """Write out the access lines the log handler buffers (server/logsink.py)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


#: Allocations (net) between two collections of the young generation.
GC_YOUNG_THRESHOLD = 10_000


async def _serve_metrics(metrics: Any, config: GatewayConfig) -> Any:
    """``--metrics-port``: GET /metrics without a key, on ``--metrics-host``."""
    from aiohttp import web

    from ails.server.metrics import metrics_app

    runner = web.AppRunner(metrics_app(metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
    host, port = runner.addresses[0][:2]
    _say(config, f"ails: metrics on {_url(host, port)}/metrics")
    return runner


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
