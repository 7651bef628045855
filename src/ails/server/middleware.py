"""What wraps every request of the gateway (each handler, once, when its
route is added: :class:`Routes`): a request id, OpenAI-style bodies for
every refusal (aiohttp's own included), no traceback ever sent, one
``Authorization`` header at most, and one access log line that never holds a
header or the body (keys live there)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Protocol

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ails.server.connections import guarded
from ails.server.dialects import messages_stream
from ails.server.errors import JSON_TYPE, GatewayError, error_response
from ails.server.logsink import access_sink
from ails.server.records import CALLER, CURRENT, RECORD, RID, Finish, RequestRecord
from ails.server.security import SecurityPolicy, screen

log = logging.getLogger("ails.server")

_RID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RID_PREFIX = secrets.token_hex(10)
_rid_counter = itertools.count(1)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encode = msgspec.json.Encoder().encode


def _http_error(exc: web.HTTPException, request: web.Request) -> GatewayError:
    """aiohttp's own refusals (no route, wrong method, too large) as OpenAI errors."""
    if exc.status == 404:
        return GatewayError(
            404,
            f"Unknown path: {request.method} {request.path}. "
            f"This gateway serves: {', '.join(_endpoints(request.app))}",
            code="unknown_url",
        )
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return GatewayError(
            405,
            f"{request.method} is not allowed on {request.path} (allowed: {allow})",
            code="method_not_allowed",
            headers={"Allow": allow} if allow else None,
        )
    if exc.status == 413:
        return GatewayError(413, "the request body is too large", code="body_too_large")
    return GatewayError(exc.status, exc.reason or "request refused")


def _refusal(err: GatewayError, request: web.Request, rid: str) -> web.Response:
    """An OpenAI error body, or Anthropic's on its Messages API (a wrong
    method, a duplicate header, a bug: the client there reads only that shape)."""
    if request.path.startswith("/v1/messages"):
        return anthropic_error_response(err, rid)
    return error_response(err, request_id=rid)


def anthropic_error_response(err: GatewayError, rid: str) -> web.Response:
    """A refusal as Anthropic's API sends it: its body and statuses."""
    status, body = messages_stream.error_status_and_body(err.status, err.message, err.code)
    headers = {**(err.headers or {}), "x-request-id": rid}
    return web.Response(status=status, body=_encode(body), content_type=JSON_TYPE, headers=headers)


def _endpoints(app: web.Application) -> list[str]:
    """``METHOD /path`` of every route, for the 404 of a path nobody serves."""
    seen: dict[str, None] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/v1/") or path in ("/health", "/ready", "/openapi.json", "/"):
            seen[f"{route.method} {path}"] = None
    return list(seen)


#: Wraps one handler, given the template of its route (its metrics label).
Wrap = Callable[[_Handler, str], _Handler]
#: The metrics' label of a request no route serves (a 404, a 405, a preflight).
NO_ROUTE = "other"


def request_wrapper(
    policy: SecurityPolicy | None = None,
    *,
    record: bool = False,
    finish: Finish | None = None,
    keep_record: bool = False,
) -> Wrap:
    """What the gateway puts around each of its handlers, once, when the
    route is added (:class:`Routes`): aiohttp's middleware layer would build
    a wrapper per request and cost three frames more. In order: the guarded
    connection is told that the head has arrived (deadlines,
    server/connections.py); a request id; with ``record``, the request's
    :class:`RequestRecord` (server/records.py: the running task's, and
    ``request[RECORD]`` too with ``keep_record``, for the JSON access line
    written after the answer); one ``Authorization`` header at most; the
    ``Host`` and CORS checks of ``policy`` (server/security.py); then the
    handler, with every refusal turned into the dialect's error JSON and never
    a traceback; last, the record with the final status to ``finish`` (the
    metrics), under the route's template."""

    def wrap(handler: _Handler, endpoint: str) -> _Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            rid = request.headers.get("X-Request-Id")
            if rid is None or _RID_RE.fullmatch(rid) is None:
                # Unique, not secret: a random per-process prefix and a counter cost
                # far less than uuid4 (a system call for 16 random bytes) per request.
                rid = "%s%012x" % (_RID_PREFIX, next(_rid_counter))  # noqa: UP031
            request[RID] = rid
            rec: RequestRecord | None = None
            if record:
                rec = RequestRecord(perf_counter())
                if keep_record:
                    request[RECORD] = rec
                token = CURRENT.set(rec)
            conn = guarded(request)
            if conn is not None:
                conn.request_started(request)
            try:
                if len(request.headers.getall("Authorization", ())) > 1:
                    # Which one counts differs between proxies and servers: trust neither.
                    raise GatewayError(
                        400,
                        "the request has more than one Authorization header; send exactly one",
                        code="duplicate_authorization",
                    )
                early = screen(policy, request) if policy is not None else None
                resp = early if early is not None else await handler(request)
            except GatewayError as err:
                if rec is not None:  # the metrics count some refusals by their code
                    rec.error = err.code
                resp = _refusal(err, request, rid)
            except web.HTTPException as exc:
                if exc.status < 400:  # a redirect: aiohttp sends it
                    if rec is not None:
                        CURRENT.reset(token)
                        if finish is not None:
                            finish(endpoint, exc.status, rec, perf_counter())
                    raise
                resp = _refusal(_http_error(exc, request), request, rid)
            except asyncio.CancelledError:
                if rec is not None:
                    CURRENT.reset(token)
                    if finish is not None:  # the client went away: nginx's 499
                        finish(endpoint, 499, rec, perf_counter())
                raise
            except Exception:
                # Never a traceback to the client: the log has it, under the request id.
                log.exception("request %s: unexpected error", rid)
                bug = GatewayError(500, f"internal error (request id {rid})", code="internal_error")
                resp = _refusal(bug, request, rid)
            finally:
                if conn is not None:
                    conn.request_ended(request)
            if rec is not None:
                CURRENT.reset(token)
                now = perf_counter()
                if not rec.first:
                    rec.first = now  # a whole answer: its body goes out now
                if finish is not None:
                    finish(endpoint, resp.status, rec, now)
            if not resp.prepared:
                resp.headers["x-request-id"] = rid
            return resp

        return wrapped

    return wrap


async def _no_route(request: web.Request) -> web.StreamResponse:
    """The catch-all route's handler: what aiohttp's router answers when no
    route matches, 405 with ``Allow`` when the path has routes for other
    methods, else 404 (then :func:`_http_error` makes them OpenAI errors).
    Only refusals and CORS preflights come here."""
    own = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not own:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


class _RouteAdder(Protocol):
    def add_get(self, path: str, handler: _Handler, *, name: str | None = None) -> Any: ...
    def add_post(self, path: str, handler: _Handler, *, name: str | None = None) -> Any: ...
    def add_delete(self, path: str, handler: _Handler, *, name: str | None = None) -> Any: ...


class RouteTarget(Protocol):
    """Where an endpoint module adds its routes: an application, or :class:`Routes`."""

    @property
    def router(self) -> _RouteAdder: ...


class Routes:
    """``app.router``'s ``add_get``/``add_post``/``add_delete`` with every
    handler wrapped by ``wrap`` under its route's template, and
    :meth:`add_fallback`, the catch-all that gives refusals the same wrapper
    (the gateway has no aiohttp middleware). Passed where an application is
    (``routes.router.add_post(...)``)."""

    def __init__(self, app: web.Application, wrap: Wrap) -> None:
        self.app = app
        self.wrap = wrap

    @property
    def router(self) -> Routes:
        return self

    def add(
        self, methods: tuple[str, ...], path: str, handler: _Handler, name: str | None = None
    ) -> web.AbstractRoute:
        resource = self.app.router.add_resource(path, name=name)
        wrapped = self.wrap(handler, resource.canonical)
        route: web.AbstractRoute | None = None
        for method in methods:
            route = resource.add_route(method, wrapped)
        assert route is not None
        return route

    def add_get(self, path: str, handler: _Handler, *, name: str | None = None) -> Any:
        return self.add(("HEAD", "GET"), path, handler, name)  # as aiohttp's add_get

    def add_post(self, path: str, handler: _Handler, *, name: str | None = None) -> Any:
        return self.add(("POST",), path, handler, name)

    def add_delete(self, path: str, handler: _Handler, *, name: str | None = None) -> Any:
        return self.add(("DELETE",), path, handler, name)

    def add_fallback(self) -> None:
        """The catch-all, added last: the router tries it after every other
        route (it is indexed under ``/``), so it gets only what no route
        serves, whatever the method and path; its metrics label is ``other``."""
        resource = _AnyPath("/")
        self.app.router.register_resource(resource)
        resource.add_route("*", self.wrap(_no_route, NO_ROUTE))


class _AnyPath(web.PlainResource):
    """A resource that every request target matches, ``*`` (``OPTIONS *``)
    and other paths without a leading ``/`` too, which no path pattern does.
    Indexed under ``/`` (its canonical path), where the router looks last."""

    def _match(self, path: str) -> dict[str, str] | None:
        return {}

    def raw_match(self, path: str) -> bool:
        return True


class AccessLogger(AbstractAccessLogger):
    """One line per request: client, method, path, status, duration, request id,
        and who called (``key:`` and the key's id: its ``[keys.NAME]`` name, else
        the first 8 hex digits of its digest; ``signed`` or ``open``). Never a
        header or the body (keys live there). ``--log-format json`` has its own
        (server/logformat.py). Through ``ails serve``'s handler the line is written
    without a ``LogRecord`` and buffered (server/logsink.py)."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        # aiohttp makes one per connection: the handler a line reaches is
        # looked up once a connection, not once a request.
        self.sink = access_sink(logger)
        #: The peer's address and a space: one per connection, so made once
        #: (``request.remote`` is a Python property per request).
        self._remote = ""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # request[...] and not request.get: a request is a Mapping whose get
        # is Python code calling __getitem__, two frames where one does.
        try:
            caller = request[CALLER]
        except KeyError:
            caller = None
        who = caller.label() if caller is not None else "-"
        try:
            rid = request[RID]
        except KeyError:
            rid = "-"
        sink = self.sink
        if sink is not None:  # ``ails serve``'s own handler: no record, buffered
            remote = self._remote
            if not remote:
                remote = self._remote = f"{request.remote} "
            # %-formatting: an f-string with a format spec costs twice as much here.
            line = "%s%s %s %d %.1fms rid=%s who=%s" % (  # noqa: UP031
                remote,
                request.method,
                request.path,
                response.status,
                time * 1000,
                rid,
                who,
            )
            sink.access(logger.name, line)
            return
        logger.info(
            "%s %s %s %d %.1fms rid=%s who=%s",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
            rid,
            who,
        )


__all__ = [
    "NO_ROUTE",
    "AccessLogger",
    "RouteTarget",
    "Routes",
    "Wrap",
    "anthropic_error_response",
    "request_wrapper",
]
