"""The gateway's Prometheus metrics; docs/metrics.md lists every one with its
labels and buckets.

One registry per :class:`~ails.server.app.Gateway`, never the process-wide
one, so gateways in one process (the tests) keep their own counts; the
library writes the text format. What every request touches is counted in
plain ints here and turned into metric families only when scraped
(:mod:`ails.server.metrics_export`); what exists anyway (the connection
guard's counts, the embedded model's slots, failed model-list refreshes,
streams open) is read only then. Every label is bounded: a route template, a
served model name (anything else is ``other``), a key's id, a backend's name,
an HTTP status.
"""

from __future__ import annotations

import hmac
from bisect import bisect_left
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

from ails.errors import CONNECTION_FAILED, AilsError, ProtocolError, ProviderError, Timeout
from ails.providers.base import Provider
from ails.server.auth import bearer_token
from ails.server.errors import GatewayError
from ails.server.records import CURRENT, BackendRecorder, RequestRecord

if TYPE_CHECKING:
    from ails.server.app import Gateway

# No ``*_created`` series: they double the scrape, and each new label set
# would read the clock. (A process-wide switch; ails serve is its own process.)
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds; from a cache hit (ms) to a long generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Seconds of one Redis round trip (the gateway gives up at 0.25 s by default).
STATE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: The refusals counted in ``ails_limit_refusals_total`` (GatewayError codes).
REFUSALS = frozenset({"rate_limit_exceeded", "quota_exceeded", "state_unavailable", "queue_full"})
#: ``status_class`` by ``status // 100`` (0: none that HTTP knows).
CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


def error_label(exc: AilsError) -> str:
    """A failed attempt's ``code`` label: the HTTP status, or the kind of
    failure without one. Never the upstream's own text (unbounded)."""
    status = exc.status if isinstance(exc, ProviderError) else None
    if isinstance(status, int) and 100 <= status <= 599:
        return str(status)
    if isinstance(exc, Timeout):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, ProviderError) and exc.code == CONNECTION_FAILED:
        return "connection_failed"
    return "error"


class Latency:
    """One label set of a latency histogram: counts per bucket (each bucket
    alone; the last is +Inf) and the sum of what was observed."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # The first bound >= seconds: Prometheus' buckets are "less or equal".
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class Series:
    """What is counted per route template and model: answers by status class,
    and their two latencies."""

    __slots__ = ("duration", "first_byte", "statuses")

    def __init__(self) -> None:
        self.statuses = [0] * len(CLASSES)
        self.duration = Latency()
        self.first_byte = Latency()


class GatewayMetrics:
    """The counts of one gateway, the router's events and the scrape.

    What every request touches is counted in plain ints and lists here (a
    dict lookup and an add each; prometheus_client's own counters take a lock
    and check their type per ``inc``, which measured as a third of the
    metrics' cost per request), streams without usage too (most clients do
    not ask for it); :mod:`ails.server.metrics_export` turns them into metric
    families when scraped. Rare events (failures, retries, refusals) use the
    library's counters directly.
    """

    def __init__(self, gateway: Gateway, *, key: str | None = None) -> None:
        self.gateway = gateway
        #: ``--metrics-key``: GET /metrics on the main port needs it (None: not served there).
        self.key = key
        #: Streamed answers being written now.
        self.streams = 0
        #: (route template, model label) -> its counts.
        self.series: dict[tuple[str, str], Series] = {}
        #: (model label, key id, backend) -> [prompt, completion]: one count per
        #: request, summed by each of the three when scraped.
        self.tokens: dict[tuple[str, str, str], list[int]] = {}
        #: backend -> calls (first tries and retries).
        self.attempts: dict[str, int] = {}
        #: backend -> streams it answered without usage (most clients do not ask).
        self.no_usage: dict[str, int] = {}
        self.state_up: str | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.failures = Counter(
            "ails_upstream_failures",
            "Calls to a backend that failed before the answer started, by HTTP status or kind.",
            ["backend", "code"],
            registry=reg,
        )
        self.retries = Counter(
            "ails_upstream_retries",
            "Failed calls that the same backend was asked again after.",
            ["backend", "code"],
            registry=reg,
        )
        self.fallbacks = Counter(
            "ails_upstream_fallbacks",
            "Times a backend was given up for the next one (its last failure's code).",
            ["backend", "code"],
            registry=reg,
        )
        self.refusals = Counter(
            "ails_limit_refusals",
            "Requests refused by a rate limit, a quota, or while the shared state is down.",
            ["reason"],
            registry=reg,
        )
        self.state_calls = Histogram(
            "ails_shared_state_call_seconds",
            "Seconds of one round trip to the shared state (Redis).",
            buckets=STATE_BUCKETS,
            registry=reg,
        )
        self.state_errors = Counter(
            "ails_shared_state_errors",
            "Round trips to the shared state (Redis) that failed or timed out.",
            registry=reg,
        )
        for reason in sorted(REFUSALS):
            self.refusals.labels(reason)  # shown at 0 from the start
        self.events = _Events(self)
        gateway.router.events = self.events
        gateway.auth.store.watch(self._state_call)
        from ails.server.metrics_export import Exporter  # it imports this module

        reg.register(Exporter(self))

    # -- per request ---------------------------------------------------------------

    def finish(self, endpoint: str, status: int, record: RequestRecord, now: float) -> None:
        """A request to the route ``endpoint`` (its template; ``other``: none
        served it) is over: count it (the gateway's request wrapper calls
        this). Inline, not in helpers: it runs once per request."""
        label = record.label or "other"
        try:
            series = self.series[endpoint, label]
        except KeyError:
            series = self.series[endpoint, label] = Series()
        series.statuses[status // 100 if 0 < status < 600 else 0] += 1
        start = record.start
        seconds = now - start
        bucket = bisect_left(LATENCY_BUCKETS, seconds)
        latency = series.duration
        latency.counts[bucket] += 1
        latency.sum += seconds
        first = record.first
        if first and first != now:  # else the first byte's time is the whole time's
            seconds = first - start
            bucket = bisect_left(LATENCY_BUCKETS, seconds)
        latency = series.first_byte
        latency.counts[bucket] += 1
        latency.sum += seconds
        prompt, completion = record.prompt_tokens, record.completion_tokens
        if prompt or completion:
            caller = record.caller
            key_id = "none" if caller is None else caller.key_id or caller.label()
            where = (label, key_id, record.backend or "none")
            tokens = self.tokens.get(where)
            if tokens is None:
                tokens = self.tokens[where] = [0, 0]
            tokens[0] += prompt
            tokens[1] += completion
        elif record.streamed:
            backend = record.backend or "none"
            self.no_usage[backend] = self.no_usage.get(backend, 0) + 1
        error = record.error
        if error is not None and error in REFUSALS:
            self.refusals.labels(error).inc()

    def _state_call(self, seconds: float, ok: bool) -> None:
        self.state_calls.observe(seconds)
        if not ok:
            self.state_errors.inc()

    # -- the scrape ------------------------------------------------------------------

    async def scrape(self) -> bytes:
        # The store's health is async (a PING at most once a second); the
        # collector below is not, so it is asked here first.
        self.state_up = await self.gateway.auth.store.health()
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics`` on ``--metrics-port``: no key (bound to loopback by default)."""
        return web.Response(body=await self.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_keyed(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics`` on the main port: only with ``Bearer <--metrics-key>``
        (behind a reverse proxy every request comes from loopback)."""
        token = bearer_token(request.headers.get("Authorization")) or ""
        expected = self.key or ""
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            raise GatewayError(
                401,
                "GET /metrics needs 'Authorization: Bearer <the gateway's --metrics-key>'",
                code="invalid_api_key",
            )
        return await self.handle(request)


def metrics_app(metrics: GatewayMetrics) -> web.Application:
    """The application of ``--metrics-port``: ``GET /metrics`` and nothing else."""
    app = web.Application()
    app.router.add_get("/metrics", metrics.handle)
    return app


class _Events(BackendRecorder):
    """The router's events, counted (and the backend noted on the request's record)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def attempt(self, provider: Provider, model: str) -> None:
        record = CURRENT.get()  # BackendRecorder's, inline: it runs per call
        if record is not None:
            record.backend = provider.name
        attempts = self.metrics.attempts
        attempts[provider.name] = attempts.get(provider.name, 0) + 1

    def failed(self, provider: Provider, model: str, exc: AilsError, retrying: bool) -> None:
        code = error_label(exc)
        self.metrics.failures.labels(provider.name, code).inc()
        if retrying:
            self.metrics.retries.labels(provider.name, code).inc()

    def fallback(self, provider: Provider, model: str, exc: AilsError) -> None:
        self.metrics.fallbacks.labels(provider.name, error_label(exc)).inc()


__all__ = [
    "CLASSES",
    "LATENCY_BUCKETS",
    "REFUSALS",
    "STATE_BUCKETS",
    "GatewayMetrics",
    "Latency",
    "Series",
    "metrics_app",
]
