"""Deadlines and caps on the gateway's client connections.

Without them one client without a key could hold every file descriptor: a
socket that never sends a request, a request head sent at one byte a second,
or a body that stalls each keep a connection open for as long as the client
likes. So every connection is wrapped (:class:`_Guarded`, a protocol in front
of aiohttp's own) and:

* its request head must be complete within ``header_timeout`` of the
  connection being opened, or of the first byte of a later request;
* its body must be complete within ``body_timeout`` of the head;
* between requests it may stay idle ``keepalive_timeout`` (aiohttp's own
  keep-alive timer, given the same number);
* one peer address may hold ``max_per_client`` connections, all of them
  together ``max_connections``; a trusted proxy (``--trusted-proxy``) is
  exempt from the first, since all its clients share its address.

A late head or body gets ``408`` with an OpenAI error body (a late body on
``/v1/messages``: Anthropic's), a connection over a cap ``503`` with
``retry-after``; both are then closed. Every refusal is
counted in :class:`ConnectionStats`. Running out of descriptors anyway (the
``ulimit``) makes asyncio log ``socket.accept() out of system resource`` on
every attempt; :meth:`ConnectionGuard.handle_loop_exception` turns that into
at most one line per ``log_every`` seconds with a count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from aiohttp import web

from ails.server.auth import in_networks, parse_networks
from ails.server.dialects import messages_stream
from ails.wire import error_json

log = logging.getLogger("ails.server")

_ACCEPT_FAILED = "socket.accept() out of system resource"
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds (None: no limit) and counts; the defaults are the documented ones."""

    header_timeout: float | None = 10.0
    body_timeout: float | None = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 4096
    max_per_client: int = 256


@dataclass
class ConnectionStats:
    """What the guard refused and closed, for the metrics endpoint to come."""

    refused_per_client: int = 0
    refused_total: int = 0
    head_timeouts: int = 0
    body_timeouts: int = 0
    accept_errors: int = 0

    @property
    def refused(self) -> int:
        return self.refused_per_client + self.refused_total


def _raw_response(
    status: int, reason: str, message: str, code: str, extra: str = "", *, anthropic: bool = False
) -> bytes:
    """A whole HTTP/1.1 answer, written straight to the socket: there is no
    request object yet (head timeout, a cap) or the handler is waiting for a
    body that will not come (then on /v1/messages in Anthropic's shape)."""
    if anthropic:
        body = _encode(messages_stream.error_status_and_body(status, message, code)[1])
    else:
        body = error_json(
            message, type="invalid_request_error" if status < 500 else "server_error", code=code
        )
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard:
    """The caps and counters shared by every connection of one server."""

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        trusted_proxies: Iterable[str] = (),
        log_every: float = 10.0,
    ) -> None:
        self.limits = limits
        self.stats = ConnectionStats()
        self.open = 0
        self.per_client: Counter[str] = Counter()
        self._trusted = parse_networks(trusted_proxies)
        self._log_every = log_every
        self._next_log: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    # -- the server side -------------------------------------------------------

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` around aiohttp's."""
        return lambda: _Guarded(self, factory)

    def handle_loop_exception(
        self, loop: asyncio.AbstractEventLoop, context: Mapping[str, Any]
    ) -> None:
        """The event loop's exception handler: accept failures (out of file
        descriptors) counted and logged at a bounded rate, the rest as asyncio would."""
        if context.get("message") == _ACCEPT_FAILED:
            self.stats.accept_errors += 1
            exc = context.get("exception")
            self.note("accept", f"cannot accept connections: {exc or 'out of resources'}")
            return
        loop.default_exception_handler(dict(context))

    # -- used by the connections -----------------------------------------------

    def admit(self, peer: str) -> bytes | None:
        """Count a new connection from ``peer``; the refusal to send if it is over a cap."""
        if self.open >= self.limits.max_connections:
            self.stats.refused_total += 1
            self.note("cap", f"refused a connection: {self.open} open (--max-connections)")
            return _raw_response(
                503,
                "Service Unavailable",
                "the gateway has as many connections open as it allows; retry in a moment",
                "too_many_connections",
                "Retry-After: 1\r\n",
            )
        if self.per_client[peer] >= self.limits.max_per_client and not in_networks(
            peer, self._trusted
        ):
            self.stats.refused_per_client += 1
            self.note(
                "cap", f"refused a connection from {peer}: it has {self.per_client[peer]} open"
            )
            return _raw_response(
                503,
                "Service Unavailable",
                f"this address has {self.per_client[peer]} connections open, the most allowed; "
                "close some, or retry in a moment",
                "too_many_connections",
                "Retry-After: 1\r\n",
            )
        self.open += 1
        self.per_client[peer] += 1
        return None

    def release(self, peer: str) -> None:
        self.open -= 1
        self.per_client[peer] -= 1
        if self.per_client[peer] <= 0:
            del self.per_client[peer]  # a client that left costs no memory

    def note(self, kind: str, message: str) -> None:
        """A log line of ``kind`` at most once per ``log_every`` seconds; the
        ones left out are counted in the next."""
        now = time.monotonic()
        if now < self._next_log.get(kind, 0.0):
            self._unlogged[kind] += 1
            return
        self._next_log[kind] = now + self._log_every
        skipped = self._unlogged.pop(kind, 0)
        more = f" ({skipped} more like it not logged)" if skipped else ""
        log.warning("%s%s", message, more)


_IDLE, _HEAD, _BODY, _BUSY = range(4)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the caps and the deadlines."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.state = _IDLE
        #: When the current state's deadline passes (None: none runs).
        self.deadline: float | None = None
        #: One timer per connection, re-armed lazily (see :meth:`_enter`).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        #: The body being waited for is a Messages request's (its 408 is Anthropic's).
        self.anthropic = False

    # -- asyncio's calls, passed on --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has asyncio.Transport's methods without being
        # a subclass of it: an isinstance check would refuse every connection.
        self.transport = cast("asyncio.Transport", transport)
        transport = self.transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self.guard.admit(self.peer)
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        self.inner = self.factory()
        self.inner.connection_made(transport)
        # Idle after connecting counts against the head's deadline.
        self._enter(_HEAD, self.guard.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:
            return  # refused: whatever it sends is dropped with the socket
        if self.state == _IDLE:
            self._enter(_HEAD, self.guard.limits.header_timeout)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.inner is not None:
            self.guard.release(self.peer)
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- what the handlers' wrapper tells (server/middleware.py) -----------------

    def request_started(self, request: web.Request) -> None:
        if request.content.is_eof():
            self.state = _BUSY  # _enter(_BUSY, None), inline: once per request
            self.deadline = None
            return
        self._enter(_BODY, self.guard.limits.body_timeout)
        self.anthropic = request.path.startswith("/v1/messages")
        request.content.on_eof(self._body_done)

    def _body_done(self) -> None:
        if self.state == _BODY:
            self._enter(_BUSY, None)

    def request_ended(self, request: web.Request) -> None:
        # _enter(state, None), inline: once per request.
        self.deadline = None
        # Whether the body has all arrived, from the state rather than
        # request.content.is_eof() (two frames): _BUSY is entered only once it
        # has (request_started, _body_done), and the state stays _BODY until then.
        if self.state != _BUSY:
            # Answered before its body was read (a bad key): aiohttp reads and
            # drops the rest for a bounded time, then closes.
            self.state = _BUSY
            return
        # Between requests aiohttp's keep-alive timer watches; the next request's
        # first byte starts the head's deadline again.
        self.state = _IDLE

    # -- the deadlines -------------------------------------------------------------

    def _enter(self, state: int, timeout: float | None) -> None:
        # Every request enters three states; a timer armed and cancelled for
        # each would cost two timer handles per request. Instead a state only
        # sets its deadline, and the one timer, when it fires, acts on the
        # deadline then in force or re-arms for it; it is re-armed at once only
        # when a deadline comes sooner than the time it is set for.
        self.state = state
        if timeout is None or self.transport is None:
            self.deadline = None
            return
        loop = asyncio.get_running_loop()
        deadline = self.deadline = loop.time() + timeout
        if self.timer is None or deadline < self.timer_at:
            self._cancel()
            self.timer = loop.call_at(deadline, self._expired)
            self.timer_at = deadline

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.deadline is None:
            return
        loop = asyncio.get_running_loop()
        # A later state's deadline: not yet (a timer may fire a little early,
        # within the loop's clock resolution: that is not "later").
        if loop.time() + 0.001 < self.deadline:
            self.timer = loop.call_at(self.deadline, self._expired)
            self.timer_at = self.deadline
            return
        guard = self.guard
        if self.state == _HEAD:
            guard.stats.head_timeouts += 1
            what, limit = "request head", guard.limits.header_timeout
        elif self.state == _BODY:
            guard.stats.body_timeouts += 1
            what, limit = "request body", guard.limits.body_timeout
        else:
            return
        guard.note(
            "timeout", f"closed a connection from {self.peer}: its {what} took over {limit:g} s"
        )
        # No answer has started: the head is not complete, or the handler is
        # still waiting for the body.
        transport.write(
            _raw_response(
                408,
                "Request Timeout",
                f"the {what} did not arrive within {limit:g} s",
                "request_timeout",
                anthropic=self.state == _BODY and self.anthropic,
            )
        )
        transport.close()


def guarded(request: web.Request) -> _Guarded | None:
    """The guarded connection a request came on, which the wrapper of the
    gateway's handlers tells when the request's head has arrived and when it
    is over (``None``: a test client's app, nothing to track)."""
    transport = request.transport
    conn = transport.get_protocol() if transport is not None else None
    return conn if isinstance(conn, _Guarded) else None


__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "ConnectionStats",
    "guarded",
]
