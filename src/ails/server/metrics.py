"""The gateway's Prometheus metrics; docs/metrics.md lists every one with its
labels and buckets.

One registry per :class:`~ails.server.app.Gateway`, never the process-wide
one, so gateways in one process (the tests) keep their own counts. What
happens per request is counted with prometheus_client's counters and
histograms, whose labelled children are looked up once per label set and
kept here (``labels()`` costs more than the ``inc``). What exists anyway (the
connection guard's counts, the embedded model's slots, failed model-list
refreshes, streams open) is read only when scraped, by a collector, so the
request path pays nothing for it. Every label is bounded: a route template, a
served model name (anything else is ``other``), a key's id, a backend's name,
an HTTP status.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ails._version import __version__
from ails.errors import CONNECTION_FAILED, AilsError, ProtocolError, ProviderError, Timeout
from ails.providers.base import Provider
from ails.server.auth import bearer_token
from ails.server.errors import GatewayError
from ails.server.records import BackendRecorder, RequestRecord, dialect_of, endpoint_of

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
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


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


class GatewayMetrics:
    """The counters of one gateway, the router's events and the scrape."""

    def __init__(self, gateway: Gateway, *, key: str | None = None) -> None:
        self.gateway = gateway
        #: ``--metrics-key``: GET /metrics on the main port needs it (None: not served there).
        self.key = key
        #: Streamed answers being written now.
        self.streams = 0
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "ails_requests",
            "Requests answered, by route template, API dialect, served model and status class.",
            ["endpoint", "dialect", "model", "status_class"],
            registry=reg,
        )
        self.duration = Histogram(
            "ails_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer.",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.first_byte = Histogram(
            "ails_time_to_first_byte_seconds",
            "Seconds from a request's arrival to the first byte of its answer's body "
            "(a stream: its first token; a whole answer: when it is sent).",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        tokens = "Tokens the backends reported (usage), prompt and completion"
        self.model_tokens = Counter(
            "ails_tokens", f"{tokens}, by served model.", ["model", "kind"], registry=reg
        )
        self.key_tokens = Counter(
            "ails_key_tokens",
            f"{tokens}, by API key id ([keys.NAME] name, else 8 hex of its SHA-256; "
            "open or signed without a key).",
            ["key_id", "kind"],
            registry=reg,
        )
        self.backend_tokens = Counter(
            "ails_backend_tokens",
            f"{tokens}, by backend (rate(): tokens/s of the embedded model).",
            ["backend", "kind"],
            registry=reg,
        )
        self.attempts = Counter(
            "ails_upstream_attempts",
            "Calls to a backend before its answer started (first tries and retries).",
            ["backend"],
            registry=reg,
        )
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
        self.no_usage = Counter(
            "ails_streams_without_usage",
            "Streams whose backend reported no usage, so their tokens are not counted "
            "(an upstream reports it when the client asks, stream_options.include_usage).",
            ["backend"],
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
        self._state_up: str | None = None
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._token_children: dict[tuple[Counter, str], tuple[Any, Any]] = {}
        self.events = _Events(self)
        gateway.router.events = self.events
        gateway.auth.store.watch(self._state_call)
        reg.register(_Snapshot(self))

    # -- per request ---------------------------------------------------------------

    def model_label(self, model: Any) -> str:
        if not isinstance(model, str):
            return "other"
        return self.gateway.router.served_name(model) or "other"

    def finish(self, request: web.Request, status: int, record: RequestRecord, now: float) -> None:
        """A request is over: count it (the record middleware's ``finish``)."""
        endpoint = endpoint_of(request)
        model = self.model_label(record.model)
        cls = status // 100 if 0 < status < 600 else 0
        key = (endpoint, model, cls)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(endpoint, dialect_of(endpoint), model, _CLASSES[cls])
            self._request_children[key] = child
        child.inc()
        latency = self._latency_children.get(key[:2])
        if latency is None:
            latency = (
                self.duration.labels(endpoint, model),
                self.first_byte.labels(endpoint, model),
            )
            self._latency_children[key[:2]] = latency
        latency[0].observe(now - record.start)
        latency[1].observe((record.first or now) - record.start)
        if record.prompt_tokens or record.completion_tokens:
            caller = request.get("caller")
            key_id = "none" if caller is None else caller.key_id or caller.label()
            for counter, label in (
                (self.model_tokens, model),
                (self.key_tokens, key_id),
                (self.backend_tokens, record.backend or "none"),
            ):
                self._tokens(counter, label, record)
        elif record.streamed:
            self.no_usage.labels(record.backend or "none").inc()
        if record.error in REFUSALS:
            self.refusals.labels(record.error).inc()

    def _tokens(self, counter: Counter, label: str, record: RequestRecord) -> None:
        children = self._token_children.get((counter, label))
        if children is None:
            children = (counter.labels(label, "prompt"), counter.labels(label, "completion"))
            self._token_children[(counter, label)] = children
        children[0].inc(record.prompt_tokens)
        children[1].inc(record.completion_tokens)

    def _state_call(self, seconds: float, ok: bool) -> None:
        self.state_calls.observe(seconds)
        if not ok:
            self.state_errors.inc()

    # -- the scrape ------------------------------------------------------------------

    async def scrape(self) -> bytes:
        # The store's health is async (a PING at most once a second); the
        # collector below is not, so it is asked here first.
        self._state_up = await self.gateway.auth.store.health()
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
        self._attempts: dict[str, Any] = {}

    def attempt(self, provider: Provider, model: str) -> None:
        super().attempt(provider, model)
        child = self._attempts.get(provider.name)
        if child is None:
            child = self._attempts[provider.name] = self.metrics.attempts.labels(provider.name)
        child.inc()

    def failed(self, provider: Provider, model: str, exc: AilsError, retrying: bool) -> None:
        code = error_label(exc)
        self.metrics.failures.labels(provider.name, code).inc()
        if retrying:
            self.metrics.retries.labels(provider.name, code).inc()

    def fallback(self, provider: Provider, model: str, exc: AilsError) -> None:
        self.metrics.fallbacks.labels(provider.name, error_label(exc)).inc()


class _Snapshot(Collector):
    """What is read at scrape time: nothing of it costs a request anything."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        gateway = m.gateway
        info = GaugeMetricFamily("ails_build_info", "The ails version serving.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "ails_streams_in_flight", "Streamed answers being written now.", value=m.streams
        )
        lists = CounterMetricFamily(
            "ails_model_list_failures",
            "Failed model-list refreshes, by backend.",
            labels=["backend"],
        )
        for backend in gateway.router.backends:
            lists.add_metric([backend.name], gateway.router.list_failures[backend.name])
        yield lists
        yield from _local_slots(gateway)
        if m._state_up is not None:
            yield GaugeMetricFamily(
                "ails_shared_state_up",
                "1 while the shared state (Redis) answers, else 0.",
                value=1 if m._state_up == "up" else 0,
            )
        guard = gateway.connections
        if guard is not None:
            yield from _connection_metrics(guard)


def _local_slots(gateway: Gateway) -> Iterator[Metric]:
    """The embedded model's slots, for each backend that can tell (``queue_snapshot``)."""
    families = {
        "slots": GaugeMetricFamily(
            "ails_local_slots", "Requests the embedded model decodes at once.", labels=["backend"]
        ),
        "busy": GaugeMetricFamily(
            "ails_local_slots_busy", "Slots decoding now.", labels=["backend"]
        ),
        "queued": GaugeMetricFamily(
            "ails_local_queued", "Requests waiting for a slot.", labels=["backend"]
        ),
    }
    for backend in gateway.router.backends:
        snapshot = getattr(backend.provider, "queue_snapshot", None)
        if snapshot is None:
            continue
        now = snapshot()
        families["slots"].add_metric([backend.name], now.slots)
        families["busy"].add_metric([backend.name], now.busy)
        families["queued"].add_metric([backend.name], now.queued)
    yield from families.values()


def _connection_metrics(guard: Any) -> Iterator[Metric]:
    stats = guard.stats
    yield GaugeMetricFamily("ails_connections_open", "Client connections open.", value=guard.open)
    refused = CounterMetricFamily(
        "ails_connections_refused",
        "Client connections refused over a cap (per_client: --max-connections-per-client).",
        labels=["cap"],
    )
    refused.add_metric(["per_client"], stats.refused_per_client)
    refused.add_metric(["total"], stats.refused_total)
    yield refused
    timeouts = CounterMetricFamily(
        "ails_connection_timeouts",
        "Client connections closed with 408: the request's head or body came too late.",
        labels=["phase"],
    )
    timeouts.add_metric(["head"], stats.head_timeouts)
    timeouts.add_metric(["body"], stats.body_timeouts)
    yield timeouts
    yield CounterMetricFamily(
        "ails_accept_errors",
        "Connections that could not be accepted (out of file descriptors).",
        value=stats.accept_errors,
    )


__all__ = ["LATENCY_BUCKETS", "REFUSALS", "STATE_BUCKETS", "GatewayMetrics", "metrics_app"]
