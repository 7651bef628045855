"""The gateway's counts as Prometheus metric families, made when scraped.

:class:`~ails.server.metrics.GatewayMetrics` counts in plain ints as
requests end; :class:`Exporter` (a prometheus_client collector, registered in
that gateway's own registry) turns them into counters and histograms here,
and reads what the gateway's parts know now: streams open, the embedded
model's slots, the connection guard, failed model-list refreshes, Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ails._version import __version__
from ails.server.metrics import CLASSES, LATENCY_BUCKETS, Latency
from ails.server.records import dialect_of

if TYPE_CHECKING:
    from ails.server.app import Gateway
    from ails.server.metrics import GatewayMetrics

_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]


class Exporter(Collector):
    """The metrics made at scrape time: the gateway's counts, and what is
    read from its parts now (nothing of it costs a request anything)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        gateway = m.gateway
        info = GaugeMetricFamily("ails_build_info", "The ails version serving.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield from _requests(m)
        yield from _tokens(m)
        attempts = CounterMetricFamily(
            "ails_upstream_attempts",
            "Calls to a backend before its answer started (first tries and retries).",
            labels=["backend"],
        )
        for name, count in list(m.attempts.items()):
            attempts.add_metric([name], count)
        yield attempts
        no_usage = CounterMetricFamily(
            "ails_streams_without_usage",
            "Streams whose backend reported no usage, so their tokens are not counted "
            "(an upstream reports it when the client asks, stream_options.include_usage).",
            labels=["backend"],
        )
        for name, count in list(m.no_usage.items()):
            no_usage.add_metric([name], count)
        yield no_usage
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
        if m.state_up is not None:
            yield GaugeMetricFamily(
                "ails_shared_state_up",
                "1 while the shared state (Redis) answers, else 0.",
                value=1 if m.state_up == "up" else 0,
            )
        guard = gateway.connections
        if guard is not None:
            yield from _connection_metrics(guard)


def _local_slots(gateway: Gateway) -> Iterator[Metric]:
    """The embedded model's slots and decode speed, for each backend that can
    tell (``queue_snapshot``, ``decode_speed``)."""
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
        "speed": GaugeMetricFamily(
            "ails_local_tokens_per_second",
            "Decode speed one answer sees: tokens after each generation's first over the "
            "seconds from its first to its last chunk, the last 16 generations together "
            "(0 before one made two tokens).",
            labels=["backend"],
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
        speed = getattr(backend.provider, "decode_speed", None)
        families["speed"].add_metric([backend.name], speed() if speed is not None else 0.0)
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


def _requests(m: GatewayMetrics) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "ails_requests",
        "Requests answered, by route template, API dialect, served model and status class.",
        labels=["endpoint", "dialect", "model", "status_class"],
    )
    duration = HistogramMetricFamily(
        "ails_request_duration_seconds",
        "Seconds from a request's arrival to the end of its answer.",
        labels=["endpoint", "model"],
    )
    first_byte = HistogramMetricFamily(
        "ails_time_to_first_byte_seconds",
        "Seconds from a request's arrival to the first byte of its answer's body "
        "(a stream: its first token; a whole answer: when it is sent).",
        labels=["endpoint", "model"],
    )
    for (endpoint, model), series in list(m.series.items()):
        dialect = dialect_of(endpoint)
        for cls, count in enumerate(series.statuses):
            if count:
                requests.add_metric([endpoint, dialect, model, CLASSES[cls]], count)
        _histogram(duration, [endpoint, model], series.duration)
        _histogram(first_byte, [endpoint, model], series.first_byte)
    yield requests
    yield duration
    yield first_byte


def _histogram(family: HistogramMetricFamily, labels: list[str], latency: Latency) -> None:
    cumulative = list(accumulate(latency.counts))
    family.add_metric(labels, list(zip(_BOUNDS, cumulative, strict=True)), latency.sum)


def _tokens(m: GatewayMetrics) -> Iterator[Metric]:
    # Counted once per (model, key id, backend); summed here by each.
    by: tuple[dict[str, list[int]], ...] = ({}, {}, {})
    for labels, (prompt, completion) in list(m.tokens.items()):
        for table, value in zip(by, labels, strict=True):
            sums = table.get(value)
            if sums is None:
                sums = table[value] = [0, 0]
            sums[0] += prompt
            sums[1] += completion
    tokens = "Tokens the backends reported (usage), prompt and completion"
    for (name, label, help_text), table in zip(
        (
            ("ails_tokens", "model", f"{tokens}, by served model."),
            (
                "ails_key_tokens",
                "key_id",
                f"{tokens}, by API key id ([keys.NAME] name, else 8 hex of its SHA-256; "
                "open or signed without a key).",
            ),
            (
                "ails_backend_tokens",
                "backend",
                f"{tokens}, by backend (rate(): tokens/s of the embedded model).",
            ),
        ),
        by,
        strict=True,
    ):
        family = CounterMetricFamily(name, help_text, labels=[label, "kind"])
        for value, (prompt, completion) in table.items():
            family.add_metric([value, "prompt"], prompt)
            family.add_metric([value, "completion"], completion)
        yield family


__all__ = ["Exporter"]
