"""Every option of ``ails serve``, declared once.

Each option is a field of :class:`GatewayConfig` whose metadata is an
:class:`~ails.server.option_spec.Option` (server/option_spec.py): its type,
default, help, file key, environment variable (``AILS_SERVE_<OPTION>`` unless
it keeps an older name) and the checks on its value. The command line's
flags (``cli/serve.py``), the TOML keys and their type checks, the
environment and the range checks (``server/config.py``) are all generated
from here, so a new option is one field.

Importing this module imports no aiohttp: ``ails --help`` builds the flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ails.providers.registry import DEFAULT_MODEL
from ails.server.option_spec import SECONDS, Option, list_option, option

if TYPE_CHECKING:
    from ails.server.connections import ConnectionLimits
    from ails.server.limits import Quota
    from ails.server.ratelimit import KeySettings

DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 2048
DEFAULT_MAX_ANONYMOUS_BODY = 256 * 1024

#: Environment variables kept from before the ``AILS_SERVE_`` names.
ENV_UPSTREAM_KEY = "AILS_UPSTREAM_KEY"
ENV_API_KEYS = "AILS_API_KEYS"
ENV_REDIS_URL = "AILS_REDIS_URL"


@dataclass
class UpstreamSettings:
    url: str
    key: str | None = None
    name: str = ""

    def __repr__(self) -> str:  # never show the key
        from ails.server.config import redact_url

        return f"UpstreamSettings(url={redact_url(self.url)!r}, name={self.name!r})"


@dataclass
class GatewayConfig:
    host: str = option("127.0.0.1", "address to bind (default 127.0.0.1)")
    port: int = option(
        DEFAULT_PORT, "port (default 8000; 0 picks a free one)", kind=int, at_least=0, at_most=65535
    )
    backends: list[str] = list_option(
        "serve a provider: a [providers.NAME] table of the config files, or a provider type "
        "such as local, signed or a plugin (repeatable; the order is the fallback order)",
        flag="backend",
        metavar="NAME",
    )
    #: ``--upstream`` URLs (file: ``[[upstreams]]`` tables, read apart).
    upstreams: list[UpstreamSettings] = list_option(
        "OpenAI-compatible base URL (repeatable; after the --backends in the fallback order)",
        flag="upstream",
        file_key="",
        metavar="URL",
    )
    upstream_key: list[str] = list_option(
        "key for the upstreams: one for all, or one per --upstream in order",
        file_key="",
        env="",
        metavar="KEY",
        repr=False,
    )
    upstream_key_file: str | None = option(
        None, "file of upstream keys, one per line (keeps them out of `ps`)", metavar="PATH"
    )
    local: bool | None = option(None, "the same as --backend local", kind=bool)
    aliases: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "option": Option(
                "another name for a served model, e.g. gpt-3.5-turbo=local/default",
                multiple=True,
                flag="alias",
                file_key="",  # the [aliases] table, read apart
                env="",
                metavar="NAME=MODEL",
            )
        },
    )
    api_keys: list[str] = list_option(
        "a key clients must send as 'Authorization: Bearer KEY' (repeatable)",
        flag="api-key",
        env=ENV_API_KEYS,
        metavar="KEY",
        repr=False,
    )
    api_key_file: str | None = option(None, "file of client keys", metavar="PATH")
    allow_signed: bool = option(
        False, "accept the ails signed protocol from clients without a key", kind=bool
    )
    signed_quota: Quota | None = option(
        None,
        "anonymous signed requests per client address, e.g. 15/day",
        metavar="N/PERIOD",
        parse=lambda text: _parse_quota(text),
        what='a string like "15/day"',
    )
    #: Seconds either side of the gateway's clock a signed ``t`` may be.
    signature_window: float = option(
        300.0, "how far a signed timestamp may be from now (default 300)", positive=True, **SECONDS
    )
    trusted_proxies: list[str] = list_option(
        "a reverse proxy whose X-Forwarded-For (last hop) gives the client address",
        flag="trusted-proxy",
        metavar="IP",
    )
    allowed_hosts: list[str] = list_option(
        "a host name clients may use besides localhost and IP addresses (repeatable; * for any)",
        flag="allowed-host",
        metavar="HOST",
    )
    cors_origins: list[str] = list_option(
        "a web origin (https://app.example.com) whose pages may call the API (repeatable)",
        flag="cors-origin",
        metavar="ORIGIN",
    )
    max_tokens_cap: int | None = option(
        None, "lower every request's max_tokens to this", kind=int, at_least=1
    )
    max_body_bytes: int = option(
        DEFAULT_MAX_BODY, "largest request body (default 4 MiB)", kind=int, at_least=1024
    )
    #: Under --allow-signed, the largest body of a request without a valid key.
    max_anonymous_body_bytes: int = option(
        DEFAULT_MAX_ANONYMOUS_BODY,
        "largest body of a request without a valid key under --allow-signed (default 256 KiB)",
        kind=int,
        at_least=1024,
    )
    max_messages: int = option(
        DEFAULT_MAX_MESSAGES, "most messages in a request (default 2048)", kind=int, at_least=1
    )
    max_retries: int = option(
        2, "retries per backend before the answer starts", kind=int, at_least=0
    )
    connect_timeout: float | None = option(
        10.0, "seconds to connect to an upstream", zero_is_none=True, **SECONDS
    )
    idle_timeout: float | None = option(
        120.0,
        "seconds an upstream may stay silent (first byte and between chunks)",
        zero_is_none=True,
        **SECONDS,
    )
    timeout: float | None = option(
        600.0, "seconds for a whole upstream answer", zero_is_none=True, **SECONDS
    )
    max_queue: int = option(
        64,
        "requests that may wait for a busy embedded model (default 64); more get 503 queue_full",
        kind=int,
        at_least=0,
    )
    models_refresh: float = option(
        30.0, "least seconds between model-list refreshes (default 30)", at_least=0, **SECONDS
    )
    #: Client connections (server/connections.py): seconds for a request's head
    #: and body and idle between requests; open connections per peer and in all.
    client_header_timeout: float | None = option(
        10.0,
        "seconds a client has to send a request's head (default 10; 0: no limit)",
        zero_is_none=True,
        **SECONDS,
    )
    client_body_timeout: float | None = option(
        30.0,
        "seconds a client has to send a request's body after its head (default 30)",
        zero_is_none=True,
        **SECONDS,
    )
    keepalive_timeout: float = option(
        75.0,
        "seconds a client connection may stay idle between requests (default 75)",
        at_least=0,
        **SECONDS,
    )
    max_connections: int = option(
        4096, "open client connections in all (default 4096)", kind=int, at_least=1
    )
    max_connections_per_client: int = option(
        256,
        "open connections per client address (default 256; trusted proxies exempt)",
        kind=int,
        at_least=1,
    )
    redis: str | None = field(
        default=None,
        repr=False,
        metadata={
            "option": Option(
                "share replay cache, quotas, rate limits and cache with other replicas "
                "(redis://HOST:PORT/DB; docs/scaling.md)",
                env=ENV_REDIS_URL,
                metavar="URL",
                what='a URL like "redis://127.0.0.1:6379/0"',
            )
        },
    )
    redis_prefix: str = option(
        "ails:", "prefix of every Redis key (default ails:)", metavar="PREFIX"
    )
    redis_timeout: float = option(
        0.25, "Redis connect/command timeout (0.25)", positive=True, **SECONDS
    )
    redis_failure: str = option(
        "closed",
        "while Redis is down: refuse what needs it with 503 (closed, default) or skip the check",
        choices=("closed", "open"),
        what='"closed" or "open"',
    )
    cache_ttl: float = option(0.0, "cache temperature-0 answers (0: off)", at_least=0, **SECONDS)
    responses_ttl: float = option(
        3600.0,
        "keep /v1/responses answers for previous_response_id and GET (0: store none)",
        at_least=0,
        **SECONDS,
    )
    rpm: int | None = option(
        None, "requests per minute of every API key (0: no limit)", kind=int, at_least=0
    )
    tpm: int | None = option(
        None, "tokens per minute of every API key (0: no limit)", kind=int, at_least=0
    )
    loop: str = option(
        "auto",
        "the event loop: auto (uvloop where installed, else asyncio), uvloop or asyncio",
        choices=("auto", "uvloop", "asyncio"),
        what='"auto", "uvloop" or "asyncio"',
    )
    access_log: bool = option(
        True, "a line per request (--no-access-log for benchmarks)", kind=bool
    )
    log_format: str = option(
        "text",
        "log lines as text (default, for a terminal) or json (one object a line; docs/metrics.md)",
        choices=("text", "json"),
        what='"text" or "json"',
    )
    #: Prometheus metrics (server/metrics.py, docs/metrics.md).
    metrics: bool = option(
        True, "count requests, tokens, latencies for GET /metrics (--no-metrics: none)", kind=bool
    )
    metrics_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "option": Option(
                "GET /metrics on the main port needs 'Authorization: Bearer KEY' with this key "
                "(without one it is not served there; see --metrics-port)",
                metavar="KEY",
            )
        },
    )
    metrics_port: int | None = option(
        None,
        "also serve GET /metrics, without a key, on this port (0 picks a free one)",
        kind=int,
        at_least=0,
        at_most=65535,
    )
    metrics_host: str = option(
        "127.0.0.1", "address of --metrics-port (default 127.0.0.1)", metavar="HOST"
    )
    ui: bool = option(True, "the chat page at / (docs/ui.md)", kind=bool)
    insecure_public: bool = option(
        False, "allow binding beyond loopback without any API key", kind=bool
    )

    # -- read from the files only, or derived ------------------------------------
    #: Their ``[providers.NAME]`` tables, from the user's config.toml and the
    #: ``--config`` file (which wins for the same NAME).
    providers: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    keys: list[KeySettings] = field(default_factory=list, repr=False)

    def backend_names(self) -> list[str]:
        """The named backends in order: ``--backend``s, then ``--local``'s."""
        default = DEFAULT_MODEL.partition("/")[0]
        names = list(dict.fromkeys(self.backends))
        if self.local and default not in names:
            names.append(default)
        if not names and not self.upstreams and self.local is None:
            names = [default]
        return names

    def secrets(self) -> list[str]:
        """Everything that must never be shown: keys, and URL credentials in
        every form they are sent (``user:pass`` as written and decoded, and
        the ``Basic`` header's base64 of it)."""
        from yarl import URL

        from ails.server.config import url_credentials

        out = [u.key for u in self.upstreams if u.key] + list(self.api_keys)
        out += [k.key for k in self.keys]
        if self.metrics_key:
            out.append(self.metrics_key)
        for url in [URL(u.url) for u in self.upstreams] + ([URL(self.redis)] if self.redis else []):
            out += url_credentials(url)
        return out

    def upstream_addresses(self) -> dict[str, str]:
        """Each ``--upstream``'s URL and ``host:port``, to be shown as ``<name>``
        (known before any backend is built, for the log's redaction)."""
        from yarl import URL

        out: dict[str, str] = {}
        for u in self.upstreams:
            url = URL(u.url)
            label = f"<{u.name}>"
            out[str(url).rstrip("/")] = label
            if url.host:
                out[f"{url.host}:{url.port}"] = label
        return out

    def connection_limits(self) -> ConnectionLimits:
        from ails.server.connections import ConnectionLimits

        return ConnectionLimits(
            header_timeout=self.client_header_timeout,
            body_timeout=self.client_body_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_connections=self.max_connections,
            max_per_client=self.max_connections_per_client,
        )


def _parse_quota(text: str) -> Quota:
    from ails.server.limits import parse_quota

    return parse_quota(text)


def declared() -> Iterator[tuple[str, Option]]:
    """Every option in declaration order: its name and its :class:`Option`."""
    for f in dataclasses.fields(GatewayConfig):
        opt = f.metadata.get("option")
        if opt is not None:
            yield f.name, opt


def default_of(name: str) -> Any:
    f = GatewayConfig.__dataclass_fields__[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_PORT",
    "ENV_API_KEYS",
    "ENV_REDIS_URL",
    "ENV_UPSTREAM_KEY",
    "GatewayConfig",
    "UpstreamSettings",
    "declared",
    "default_of",
]
