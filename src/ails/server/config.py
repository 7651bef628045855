"""The gateway's settings: :class:`~ails.server.options.GatewayConfig`, filled
from a TOML file, the environment and the command line (in rising order of
precedence), every step generated from the options' one declaration.

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
from typing import Any

from yarl import URL

from ails.errors import ConfigError
from ails.keyrules import MIN_PUBLIC_KEY_LENGTH, check_key, read_key, read_lines
from ails.server.config_file import check_file, load_file
from ails.server.option_spec import Option, env_of, file_key_of, flag_of
from ails.server.options import (
    ENV_API_KEYS,
    ENV_REDIS_URL,
    ENV_UPSTREAM_KEY,
    GatewayConfig,
    UpstreamSettings,
    declared,
    default_of,
)
from ails.server.ratelimit import key_tables
from ails.server.security import SecurityPolicy


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
        key, _ = read_key(item, "key", f"config upstream #{i + 1}", environ)
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
    that were given, by their flag's name: ``None`` or an empty list when not)."""
    cli = dict(cli or {})
    env = os.environ if environ is None else environ
    data = load_file(file) if file else {}
    check_file(data)
    cfg = GatewayConfig()
    for name, opt in declared():
        if opt.multiple:
            continue
        value = default_of(name)
        key = file_key_of(name, opt)
        if key and key in data:
            value = data[key]
        var = env_of(name, opt)
        if var and env.get(var, "").strip():
            value = _from_env(env[var].strip(), opt, var)
        given = cli.get(_dest(name, opt))
        if given is not None:
            value = given
        if opt.parse is not None and isinstance(value, str):
            value = opt.parse(value)
        setattr(cfg, name, value)
    for name in ("backends", "trusted_proxies", "allowed_hosts", "cors_origins"):
        opt = _declared(name)
        setattr(cfg, name, list(cli.get(_dest(name, opt)) or data.get(file_key_of(name, opt), [])))
    cfg.aliases = dict(data.get("aliases", {}))
    if cli.get("alias"):
        cfg.aliases = dict(parse_alias(a) for a in cli["alias"])
    cfg.providers = {**_user_providers(), **data.get("providers", {})}

    # Upstreams and their keys: command line > file; AILS_UPSTREAM_KEY fills gaps.
    if cli.get("upstream"):
        cfg.upstreams = [UpstreamSettings(url=u) for u in cli["upstream"]]
    else:
        cfg.upstreams = _file_upstreams(data.get("upstreams", []), env)
        if isinstance(data.get("upstream_key_file"), str) and not cli.get("upstream_key_file"):
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
    # Checked only now that the bind address is known: beyond loopback a client
    # key must also be long enough not to be guessed.
    min_length = 1 if is_loopback(cfg.host) else MIN_PUBLIC_KEY_LENGTH
    cfg.api_keys = list(dict.fromkeys(check_key(k, src, min_length=min_length) for k, src in keys))
    if cfg.metrics_key is not None:
        cfg.metrics_key = check_key(cfg.metrics_key, "--metrics-key", min_length=min_length)
    _finish(cfg)
    return cfg


def _declared(name: str) -> Option:
    return dict(declared())[name]


def _dest(name: str, opt: Option) -> str:
    """The keyword the command line gives an option under (its flag's name)."""
    return flag_of(name, opt).replace("-", "_")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_env(text: str, opt: Option, var: str) -> Any:
    """An environment variable's text as the option's type."""
    if opt.kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{var} must be true or false (1/0, yes/no), not {text!r}")
    if opt.kind in (int, float):
        try:
            return opt.kind(text)
        except ValueError:
            kind = "a whole number" if opt.kind is int else "a number"
            raise ConfigError(f"{var} must be {kind}, not {text!r}") from None
    return text


def _check_ranges(cfg: GatewayConfig) -> None:
    """The checks each option declares: range, sign, choices; 0 as "none"."""
    for name, opt in declared():
        value = getattr(cfg, name)
        if value is None or opt.multiple:
            continue
        if opt.choices is not None and value not in opt.choices:
            raise ConfigError(
                f"{name} is {' or '.join(repr(c) for c in opt.choices)}, not {value!r}"
            )
        if opt.kind not in (int, float):
            continue
        if opt.zero_is_none and value <= 0:
            setattr(cfg, name, None)  # 0 or less: no limit
            continue
        if opt.positive and value <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds")
        if opt.at_least is not None and value < opt.at_least:
            raise ConfigError(f"{name} must be at least {opt.at_least:g}")
        if opt.at_most is not None and value > opt.at_most:
            raise ConfigError(f"{name} must be at most {opt.at_most:g}")


def _user_providers() -> dict[str, dict[str, Any]]:
    """The ``[providers.NAME]`` tables of the user's config.toml (or ``AILS_CONFIG``)."""
    from ails import config

    return config.load().providers


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
    unnamed = 0
    for u in cfg.upstreams:
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
        if not u.name:
            unnamed += 1
            u.name = f"upstream{unnamed}"
        if u.name in names or u.name in cfg.backend_names():
            raise ConfigError(f"two backends are named {u.name!r}")
        names.add(u.name)
    if not cfg.upstreams and not cfg.backend_names():
        raise ConfigError(
            "nothing to serve: give --backend NAME or --upstream URL, or serve the embedded model"
        )
    _check_ranges(cfg)
    for proxy in cfg.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"a trusted proxy is an IP address or network, not {proxy!r}"
            ) from None
    _check_shared(cfg)
    _check_public_signed(cfg)
    if not cfg.metrics and (cfg.metrics_key is not None or cfg.metrics_port is not None):
        raise ConfigError("--metrics-key and --metrics-port serve the metrics: drop --no-metrics")
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
    limits = [v for k in cfg.keys for v in (k.rpm, k.tpm)]
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
