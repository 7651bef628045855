"""The gateway's settings: one dataclass, filled from a TOML file, the
environment and the command line (in rising order of precedence).

A list given on the command line (``--upstream``, ``--api-key``, ``--alias``)
replaces the file's list rather than adding to it, so what a command line says
is what runs. Secrets have ways in that keep them out of ``ps``: key files and
environment variables.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from ails.errors import ConfigError
from ails.server.config_file import SCALARS, check_file, load_file, read_lines
from ails.server.connections import ConnectionLimits
from ails.server.keyrules import MIN_PUBLIC_KEY_LENGTH, check_key
from ails.server.limits import Quota, parse_quota
from ails.server.policy import POLICIES
from ails.server.ratelimit import KeySettings, key_tables
from ails.server.security import SecurityPolicy

DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 2048
DEFAULT_MAX_ANONYMOUS_BODY = 256 * 1024

#: Environment variables: one upstream key for every upstream that has none,
#: and client API keys, comma separated.
ENV_UPSTREAM_KEY = "AILS_UPSTREAM_KEY"
ENV_API_KEYS = "AILS_API_KEYS"
#: The Redis URL of shared state (keeps a password out of ``ps``).
ENV_REDIS_URL = "AILS_REDIS_URL"


@dataclass
class UpstreamSettings:
    url: str
    key: str | None = None
    name: str = ""

    def __repr__(self) -> str:  # never show the key
        return f"UpstreamSettings(url={redact_url(self.url)!r}, name={self.name!r})"


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    upstreams: list[UpstreamSettings] = field(default_factory=list)
    #: ``None``: serve the embedded model only when there is no upstream.
    local: bool | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    api_keys: list[str] = field(default_factory=list, repr=False)
    allow_signed: bool = False
    signed_quota: Quota | None = None
    #: Seconds either side of the gateway's clock a signed ``t`` may be.
    signature_window: float = 300.0
    trusted_proxies: list[str] = field(default_factory=list)
    #: Host names answered besides localhost and IP literals ("*": any), and
    #: browser origins allowed by CORS (server/security.py).
    allowed_hosts: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: Under --allow-signed, the largest body of a request without a valid key.
    max_anonymous_body_bytes: int = DEFAULT_MAX_ANONYMOUS_BODY
    max_messages: int = DEFAULT_MAX_MESSAGES
    #: ``max_tokens`` given to every request: the client's, lowered to this.
    max_tokens_cap: int | None = None
    max_retries: int = 2
    connect_timeout: float | None = 10.0
    idle_timeout: float | None = 120.0
    timeout: float | None = 600.0
    models_refresh: float = 30.0
    #: Client connections (server/connections.py): seconds for a request's head
    #: and body and idle between requests; open connections per peer and in all.
    client_header_timeout: float | None = 10.0
    client_body_timeout: float | None = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 4096
    max_connections_per_client: int = 256
    access_log: bool = True
    insecure_public: bool = False
    #: The chat page at ``/`` (docs/ui.md).
    ui: bool = True
    #: Shared state of several replicas (docs/scaling.md): a Redis URL; None
    #: keeps the replay cache, quotas, rate limits and cache in this process.
    redis: str | None = field(default=None, repr=False)
    redis_prefix: str = "ails:"
    #: Seconds to connect to Redis and for each command.
    redis_timeout: float = 0.25
    #: While Redis is unreachable: "closed" refuses what needs it (503), "open" skips it.
    redis_failure: str = "closed"
    #: Seconds a ``temperature: 0`` answer is cached; 0: no cache.
    cache_ttl: float = 0.0
    #: Requests and tokens per minute of every client key (None/0: no limit);
    #: a ``[keys.NAME]`` table sets its own.
    rpm: int | None = None
    tpm: int | None = None
    keys: list[KeySettings] = field(default_factory=list, repr=False)

    @property
    def serve_local(self) -> bool:
        return self.local if self.local is not None else not self.upstreams

    def secrets(self) -> list[str]:
        """Everything that must never be shown: keys, and URL credentials in
        every form they are sent (``user:pass`` as written and decoded, and
        the ``Basic`` header's base64 of it)."""
        out = [u.key for u in self.upstreams if u.key] + list(self.api_keys)
        out += [k.key for k in self.keys]
        for url in [URL(u.url) for u in self.upstreams] + ([URL(self.redis)] if self.redis else []):
            out += url_credentials(url)
        return out

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            header_timeout=self.client_header_timeout,
            body_timeout=self.client_body_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_connections=self.max_connections,
            max_per_client=self.max_connections_per_client,
        )

    def upstream_addresses(self) -> dict[str, str]:
        """Each upstream's URL and ``host:port``, to be shown as ``<name>``."""
        out: dict[str, str] = {}
        for u in self.upstreams:
            url = URL(u.url)
            label = f"<{u.name}>"
            out[str(url).rstrip("/")] = label
            if url.host:
                out[f"{url.host}:{url.port}"] = label
        return out


def url_credentials(url: URL) -> list[str]:
    """A URL's password in every form a log or an echo may show it."""
    if not url.password:
        return []
    user, password = url.user or "", url.password
    out = [password, url.raw_password or "", f"{user}:{password}"]
    out.append(f"{url.raw_user or ''}:{url.raw_password or ''}")
    for encoding in ("latin-1", "utf-8"):  # aiohttp's BasicAuth uses latin-1
        try:
            pair = f"{user}:{password}".encode(encoding)
        except UnicodeEncodeError:
            continue
        out.append(base64.b64encode(pair).decode("ascii"))
    return out


def redact_url(url: str) -> str:
    """The URL without its password, for display."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_alias(text: str) -> tuple[str, str]:
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise ConfigError(f"an alias is NAME=MODEL, e.g. gpt-3.5-turbo=local/default; got {text!r}")
    return name, target


def _file_upstreams(items: Any, environ: Mapping[str, str]) -> list[UpstreamSettings]:
    if not isinstance(items, list):
        raise ConfigError("config [[upstreams]] must be a list of tables with a url")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise ConfigError(f'config upstream #{i + 1} needs url = "http://host:port/v1"')
        unknown = set(item) - {"url", "key", "key_file", "key_env", "name"}
        if unknown:
            raise ConfigError(f"config upstream #{i + 1}: unknown {', '.join(sorted(unknown))}")
        key = item.get("key")
        if isinstance(item.get("key_file"), str):
            lines = read_lines(item["key_file"], "upstream key")
            key = lines[0] if lines else None
        if isinstance(item.get("key_env"), str):
            key = environ.get(item["key_env"]) or key
        if key is not None:
            key = check_key(str(key), f"config upstream #{i + 1}")
        out.append(UpstreamSettings(url=item["url"], key=key, name=str(item.get("name") or "")))
    return out


def _assign_keys(upstreams: list[UpstreamSettings], keys: list[str]) -> None:
    """One key for all, or the Nth key for the Nth upstream."""
    if not keys:
        return
    if len(keys) == 1:
        for u in upstreams:
            u.key = keys[0]
    elif len(keys) == len(upstreams):
        for u, k in zip(upstreams, keys, strict=True):
            u.key = k
    else:
        raise ConfigError(
            f"{len(keys)} upstream keys for {len(upstreams)} upstreams: give one key for all, "
            "or exactly one per upstream, in the same order"
        )


def build_config(
    *,
    file: str | None = None,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Settings from the file, then the environment, then ``cli`` (the options
    that were given: flags only when set, lists only when not empty)."""
    cli = dict(cli or {})
    env = os.environ if environ is None else environ
    data = load_file(file) if file else {}
    check_file(data)
    cfg = GatewayConfig()
    for key in SCALARS:
        if key in data and hasattr(cfg, key):
            setattr(cfg, key, data[key])
    cfg.trusted_proxies = list(data.get("trusted_proxies", []))
    cfg.allowed_hosts = list(cli.get("allowed_host") or data.get("allowed_hosts", []))
    cfg.cors_origins = list(cli.get("cors_origin") or data.get("cors_origins", []))
    cfg.aliases = dict(data.get("aliases", {}))

    # Upstreams and their keys: command line > file; AILS_UPSTREAM_KEY fills gaps.
    if cli.get("upstream"):
        cfg.upstreams = [UpstreamSettings(url=u) for u in cli["upstream"]]
    else:
        cfg.upstreams = _file_upstreams(data.get("upstreams", []), env)
        if isinstance(data.get("upstream_key_file"), str):
            path = data["upstream_key_file"]
            _assign_keys(
                cfg.upstreams,
                [
                    check_key(k, f"config upstream_key_file {path}")
                    for k in read_lines(path, "upstream key")
                ],
            )
    cli_keys = [check_key(k, "--upstream-key") for k in cli.get("upstream_key") or []]
    if cli.get("upstream_key_file"):
        path = cli["upstream_key_file"]
        cli_keys += [
            check_key(k, f"--upstream-key-file {path}") for k in read_lines(path, "upstream key")
        ]
    _assign_keys(cfg.upstreams, cli_keys)
    for u in cfg.upstreams:
        # An upstream with credentials in its URL already has its way in.
        if u.key is None and env.get(ENV_UPSTREAM_KEY) and URL(u.url).user is None:
            u.key = env[ENV_UPSTREAM_KEY]

    # Client keys: command line > AILS_API_KEYS > file; each with where it came from.
    keys = _client_keys(cli, data, env)
    # Named keys with their own limits ([keys.NAME]) are always accepted too.
    cfg.keys = key_tables(data.get("keys", {}), env)
    keys += [(k.key, f"config [keys.{k.name}]") for k in cfg.keys]
    cfg.redis = cli.get("redis") or env.get(ENV_REDIS_URL) or cfg.redis

    if cli.get("alias"):
        cfg.aliases = dict(parse_alias(a) for a in cli["alias"])
    if cli.get("trusted_proxy"):
        cfg.trusted_proxies = list(cli["trusted_proxy"])
    for key in (
        "host",
        "port",
        "signature_window",
        "max_body_bytes",
        "max_anonymous_body_bytes",
        "max_messages",
        "max_tokens_cap",
        "max_retries",
        "connect_timeout",
        "idle_timeout",
        "timeout",
        "models_refresh",
        "client_header_timeout",
        "client_body_timeout",
        "keepalive_timeout",
        "max_connections",
        "max_connections_per_client",
        "redis_prefix",
        "redis_timeout",
        "redis_failure",
        "cache_ttl",
        "rpm",
        "tpm",
    ):
        if cli.get(key) is not None:
            setattr(cfg, key, cli[key])
    for flag in ("local", "allow_signed", "insecure_public"):
        if cli.get(flag):
            setattr(cfg, flag, True)
    if cli.get("no_access_log"):
        cfg.access_log = False
    if cli.get("no_ui"):
        cfg.ui = False
    quota = cli.get("signed_quota") or data.get("signed_quota")
    cfg.signed_quota = parse_quota(quota) if quota else None
    # Checked only now that the bind address is known: beyond loopback a client
    # key must also be long enough not to be guessed.
    min_length = 1 if is_loopback(cfg.host) else MIN_PUBLIC_KEY_LENGTH
    cfg.api_keys = list(dict.fromkeys(check_key(k, src, min_length=min_length) for k, src in keys))
    _finish(cfg)
    return cfg


def _client_keys(
    cli: Mapping[str, Any], data: Mapping[str, Any], env: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The client keys of the first source that gives any: command line,
    then ``AILS_API_KEYS``, then the config file; each with its source's name."""
    keys = [(k, "--api-key") for k in cli.get("api_key") or []]
    if cli.get("api_key_file"):
        path = cli["api_key_file"]
        keys += [(k, f"--api-key-file {path}") for k in read_lines(path, "API key")]
    if not keys and env.get(ENV_API_KEYS, "").strip():
        entries = env[ENV_API_KEYS].split(",")
        keys = [(k.strip(), f"{ENV_API_KEYS} (entry {i})") for i, k in enumerate(entries, 1)]
    if not keys:
        keys = [(k, "config api_keys") for k in data.get("api_keys", [])]
        if data.get("api_key_file"):
            path = data["api_key_file"]
            keys += [(k, f"config api_key_file {path}") for k in read_lines(path, "API key")]
    return keys


def _finish(cfg: GatewayConfig) -> None:
    """Names for the upstreams, and every check that needs the whole picture."""
    names: set[str] = set()
    for i, u in enumerate(cfg.upstreams):
        url = URL(u.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"an upstream is an http(s) base URL like http://host:port/v1, "
                f"not {redact_url(u.url)!r}"
            )
        if url.query_string or url.fragment:
            raise ConfigError(
                f"upstream {redact_url(u.url)!r} has a query string or fragment; an upstream is a "
                "base URL (paths like /models and /chat/completions are added to it)"
            )
        if (url.user or url.password) and u.key:
            raise ConfigError(
                f"upstream {redact_url(u.url)!r} has credentials in its URL (user:password@) "
                "and an upstream key too: the two cannot both be sent; give one"
            )
        u.name = u.name or f"upstream{i}"
        if u.name in names or u.name == "local":
            raise ConfigError(f"two backends are named {u.name!r}")
        names.add(u.name)
    if not cfg.upstreams and cfg.local is False:
        raise ConfigError("nothing to serve: give --upstream URL, or serve the embedded model")
    for label, value, low in (
        ("port", cfg.port, 0),
        ("max_body_bytes", cfg.max_body_bytes, 1024),
        ("max_messages", cfg.max_messages, 1),
        ("max_retries", cfg.max_retries, 0),
        ("max_anonymous_body_bytes", cfg.max_anonymous_body_bytes, 1024),
        ("max_connections", cfg.max_connections, 1),
        ("max_connections_per_client", cfg.max_connections_per_client, 1),
    ):
        if value < low:
            raise ConfigError(f"{label} must be at least {low}")
    if cfg.port > 65535:
        raise ConfigError("port must be at most 65535")
    if cfg.max_tokens_cap is not None and cfg.max_tokens_cap < 1:
        raise ConfigError("max_tokens_cap must be at least 1")
    if cfg.keepalive_timeout < 0:
        raise ConfigError("keepalive_timeout must be 0 (close after each answer) or more seconds")
    if cfg.signature_window <= 0:
        raise ConfigError("signature_window must be a positive number of seconds")
    for t in (
        "connect_timeout",
        "idle_timeout",
        "timeout",
        "client_header_timeout",
        "client_body_timeout",
    ):
        value = getattr(cfg, t)
        if value is not None and value <= 0:
            setattr(cfg, t, None)  # 0 or less: no limit
    for proxy in cfg.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"a trusted proxy is an IP address or network, not {proxy!r}"
            ) from None
    _check_shared(cfg)
    _check_public_signed(cfg)
    # Built once here only to check the names, so that a typo stops the start.
    SecurityPolicy.build(
        bind_host=cfg.host, allowed_hosts=cfg.allowed_hosts, cors_origins=cfg.cors_origins
    )
    if not is_loopback(cfg.host) and not cfg.api_keys and not cfg.insecure_public:
        raise ConfigError(
            f"refusing to serve on {cfg.host!r} (beyond this machine) with no API key: anyone "
            "could use it. Give --api-key (or --api-key-file, AILS_API_KEYS), or "
            "--insecure-public if that is really what you want"
        )


def _check_public_signed(cfg: GatewayConfig) -> None:
    """The signing constant is public, so anonymous signed requests are anyone's
    requests: beyond loopback they need a quota."""
    if (
        cfg.allow_signed
        and cfg.signed_quota is None
        and not is_loopback(cfg.host)
        and not cfg.insecure_public
    ):
        raise ConfigError(
            f"refusing to accept anonymous signed requests on {cfg.host!r} (beyond this machine) "
            "without a quota: anyone can sign a request. Give --signed-quota (e.g. 15/day), "
            "or --insecure-public if that is really what you want"
        )


def _check_shared(cfg: GatewayConfig) -> None:
    """Redis, the response cache and rate limits."""
    if cfg.redis is not None and URL(cfg.redis).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"--redis is a URL like redis://HOST:PORT/DB, not {redact_url(cfg.redis)!r}"
        )
    if cfg.redis is not None:
        try:
            import redis  # noqa: F401 - only to know it is there
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise ConfigError(
                "--redis needs the redis package, which is not installed: pip install 'ails[redis]'"
            ) from None
    if cfg.redis_failure not in POLICIES:
        raise ConfigError(f"redis_failure is 'closed' or 'open', not {cfg.redis_failure!r}")
    if cfg.redis_timeout <= 0:
        raise ConfigError("redis_timeout must be a positive number of seconds")
    if cfg.cache_ttl < 0:
        raise ConfigError("cache_ttl must be 0 (no cache) or more seconds")
    limits = [cfg.rpm, cfg.tpm] + [v for k in cfg.keys for v in (k.rpm, k.tpm)]
    if any(v is not None and v < 0 for v in limits):
        raise ConfigError("rpm and tpm must be 0 (no limit) or more")
    if (cfg.rpm or cfg.tpm) and not cfg.api_keys:
        raise ConfigError(
            "--rpm/--tpm limit API keys, and this gateway has none: give --api-key "
            "(or [keys.NAME] tables in the config file)"
        )


__all__ = [
    "ENV_API_KEYS",
    "ENV_REDIS_URL",
    "ENV_UPSTREAM_KEY",
    "GatewayConfig",
    "UpstreamSettings",
    "build_config",
    "is_loopback",
    "load_file",
    "parse_alias",
    "read_lines",
    "redact_url",
]
