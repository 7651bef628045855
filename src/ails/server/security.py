"""What keeps a web page from driving the gateway: the Host allow-list and CORS.

A browser on the gateway's machine runs pages from anywhere, and every one of
them can send requests to ``http://127.0.0.1:8000``. Three defences, each
enough against a different trick, none of which costs a real client anything:

* **Host allow-list** (DNS rebinding). A hostile site can point its own name at
  127.0.0.1 after the page has loaded; the browser then believes the gateway
  is that site and lets the page read the answers. The ``Host`` header still
  carries the hostile name, so a name that is not allowed gets 421. Allowed:
  ``localhost``, the name the gateway was bound to, every ``--allowed-host``
  and any IP literal (``127.0.0.1:8000``, ``[::1]``, a LAN address): a page
  whose origin is an IP address cannot be rebound, since no DNS is involved.
  Ports are not compared: rebinding changes the name, never the port.
  ``--allowed-host '*'`` turns the check off (behind a proxy that checks).
* **CORS only when configured.** Without ``--cors-origin`` the gateway sends no
  ``Access-Control-*`` header and refuses every preflight (403), so a browser
  lets no other origin read an answer or send a non-simple request (JSON, a
  key). With it, preflights from the configured origins are answered and their
  answers are readable.
* **JSON only**, in the chat handler: a body must be ``application/json``. The
  only cross-site POSTs a browser sends without a preflight are forms,
  ``text/plain`` or a body with no type; all get 415.

A request is not refused for its ``Origin`` alone: the seed's own client
(ails-protocol.md) sends a browser's ``Origin`` from a script, and the walls
above already keep pages from reading answers or sending JSON.

The HTTP layer (aiohttp's parser) refuses a request line or a header line
over :data:`MAX_LINE_SIZE` / :data:`MAX_FIELD_SIZE` bytes, or more than
:data:`MAX_HEADERS` headers, with a plain 400
before any of this runs; its log line is made to name the fault without quoting
the line (:class:`ParseErrorLogFilter`): the line may be an ``Authorization``
header.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from ails.errors import ConfigError
from ails.server.errors import GatewayError

__all__ = [
    "MAX_FIELD_SIZE",
    "MAX_HEADERS",
    "MAX_LINE_SIZE",
    "ParseErrorLogFilter",
    "SecurityPolicy",
    "check_cors_origin",
    "install",
    "screen",
]

#: aiohttp's parser limits, set explicitly (these are its defaults): a request
#: line (method, path, query) or one header line longer than this, or more
#: headers than this, is refused with 400 before the application sees it.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128

_CORS_METHODS = "GET, POST, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-Request-Id"
_CORS_EXPOSE = "x-request-id, x-ails-overhead-ms, x-ails-queue-ms, retry-after"
_CORS_MAX_AGE = "600"


def check_cors_origin(origin: str) -> str:
    """An origin as a browser writes it (``scheme://host[:port]``), or ``*``."""
    origin = origin.strip()
    if origin == "*":
        return origin
    url = URL(origin)
    if (
        url.scheme not in ("http", "https")
        or not url.host
        or url.raw_path not in ("", "/")
        or url.query_string
        or url.fragment
        or url.user is not None
    ):
        raise ConfigError(
            f"a CORS origin is scheme://host[:port] like https://chat.example.com, or *; "
            f"got {origin!r}"
        )
    # The form browsers send: no trailing slash, the default port left out.
    return str(url.origin()).lower()


def _host_name(host_header: str) -> str:
    """The name (or IP literal) of a ``Host`` header, without port, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6] or [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=256)
def _host_allowed(allowed_hosts: tuple[str, ...], host_header: str) -> bool:
    # Cached: every request asks about the same few Host values, and parsing
    # one (its name, whether it is an IP address) was three Python calls a
    # request. Bounded: a client choosing its Host header cannot grow it.
    if "*" in allowed_hosts:
        return True
    name = _host_name(host_header)
    return _is_ip(name) or name in allowed_hosts


@dataclass(frozen=True)
class SecurityPolicy:
    """Which ``Host`` names and which browser origins the gateway answers."""

    #: Names accepted in ``Host`` besides ``localhost`` and IP literals; ``*``: any.
    allowed_hosts: tuple[str, ...] = ("localhost",)
    #: Origins that may call from a browser (CORS); ``*``: any. Empty: none.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        bind_host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
    ) -> SecurityPolicy:
        names = {"localhost"}
        bind = _host_name(bind_host)
        if bind and not _is_ip(bind):
            names.add(bind)  # --host myhost.lan: that name reaches it
        for entry in allowed_hosts:
            entry = entry.strip().lower()
            if not entry or any(c.isspace() or c in "/@" for c in entry):
                raise ConfigError(
                    f"an allowed host is a name like api.example.com, or *; got {entry!r}"
                )
            names.add(entry if entry == "*" else _host_name(entry))
        origins = tuple(dict.fromkeys(check_cors_origin(o) for o in cors_origins))
        return cls(allowed_hosts=tuple(sorted(names)), cors_origins=origins)

    def host_allowed(self, host_header: str | None) -> bool:
        # None: HTTP/1.0 tools; a browser always sends Host.
        return host_header is None or _host_allowed(self.allowed_hosts, host_header)

    def cors_allowed(self, origin: str) -> bool:
        return "*" in self.cors_origins or origin.lower() in self.cors_origins


def _refuse_host(host: str) -> GatewayError:
    shown = host if len(host) <= 100 else host[:100] + "..."
    return GatewayError(
        421,
        f"this gateway does not answer to the host name in 'Host: {shown}' (a guard against "
        "DNS rebinding); its operator can allow a name with --allowed-host",
        code="host_not_allowed",
    )


def _refuse_preflight(origin: str) -> GatewayError:
    shown = origin if len(origin) <= 100 else origin[:100] + "..."
    return GatewayError(
        403,
        f"web pages at {shown!r} may not call this API (no CORS for that origin); its "
        "operator can allow that origin with --cors-origin",
        code="origin_not_allowed",
    )


def screen(policy: SecurityPolicy, request: web.Request) -> web.StreamResponse | None:
    """The checks every request passes before its handler (the wrapper of the
    gateway's handlers, server/middleware.py, calls this, inside its conversion
    of :class:`GatewayError` to OpenAI error JSON): a ``Host`` not allowed is refused (421); a CORS
    preflight is answered here (204) or refused (403). ``None``: go on."""
    host = request.headers.get("Host")
    if host is not None and not _host_allowed(policy.allowed_hosts, host):  # host_allowed
        raise _refuse_host(host)
    if request.method == "OPTIONS":
        origin = request.headers.get("Origin")
        if origin is not None and "Access-Control-Request-Method" in request.headers:
            if not policy.cors_allowed(origin):
                raise _refuse_preflight(origin)
            return web.Response(status=204, headers=_preflight_headers(policy, origin))
    return None


def install(app: web.Application, policy: SecurityPolicy) -> None:
    """With CORS origins, add the hook that adds CORS headers to every answer,
    streams included (the checks themselves are :func:`screen`)."""
    if policy.cors_origins:

        async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
            origin = request.headers.get("Origin")
            if origin is not None and policy.cors_allowed(origin):
                response.headers.update(_cors_headers(policy, origin))
                response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE

        app.on_response_prepare.append(add_cors_headers)


def _cors_headers(policy: SecurityPolicy, origin: str) -> dict[str, str]:
    if "*" in policy.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    # The answer depends on Origin: a shared cache must not mix them up.
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _preflight_headers(policy: SecurityPolicy, origin: str) -> dict[str, str]:
    return {
        **_cors_headers(policy, origin),
        "Access-Control-Allow-Methods": _CORS_METHODS,
        "Access-Control-Allow-Headers": _CORS_HEADERS,
        "Access-Control-Max-Age": _CORS_MAX_AGE,
    }


class ParseErrorLogFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback whose message
    quotes the offending line, which may be ``Authorization: Bearer KEY...``.
    Keep the fact (who, which kind of fault), drop the quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_parse_error(exc):
            record.msg = f"{record.getMessage()}: {type(exc).__name__} (line not shown)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _is_parse_error(exc: BaseException) -> bool:
    from aiohttp.http_exceptions import BadHttpMessage

    return isinstance(exc, BadHttpMessage)
