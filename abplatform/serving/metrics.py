"""Prometheus metrics of the router, in the process-wide registry that fal serves on the
app's metrics port (9090 by default; locally ``python -m abplatform.local.serve
--metrics-port``).

The request path only adds to plain dicts (a few hundred nanoseconds; no locks, one event
loop); a collector turns them into metric families when Prometheus scrapes:

* ``abplatform_router_requests_total{experiment,variant,status}``: requests answered
  (``status``: ok, error, timeout, rejected);
* ``abplatform_router_request_seconds{experiment,variant}``: latency histogram (seconds);
* ``abplatform_router_log_pending_rows``: log rows buffered in memory;
* ``abplatform_router_log_spooled_rows``: log rows in spool files waiting for the database;
* ``abplatform_router_log_rows_total{outcome}``: rows written, spooled, replayed, dropped;
* ``abplatform_router_log_failed_writes_total``;
* ``abplatform_router_shadow_calls_total{outcome}``: shadow calls started, or shed because
  too many were in flight (``shed_full``) or the router was busy (``shed_busy``);
  ``abplatform_router_shadow_in_flight``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

#: Upper bounds (seconds) of the latency histogram.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class RouterMetrics(Collector):
    """Counts requests and latencies; reports them and the log writer's state on scrape."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.writer: Any = None
        self.shadows: Any = None

    def observe(self, experiment: str, variant: str, status: str, seconds: float) -> None:
        """One answered request (``seconds`` of router wall time)."""
        self.requests[(experiment, variant, status)] += 1
        key = (experiment, variant)
        counts = self.buckets.get(key)
        if counts is None:
            counts = self.buckets[key] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[key] += seconds

    def collect(self) -> Iterator[Any]:
        """Metric families for a scrape."""
        total = CounterMetricFamily(
            "abplatform_router_requests", "Requests answered", labels=["experiment", "variant",
                                                                        "status"])  # fmt: skip
        for labels, n in list(self.requests.items()):
            total.add_metric(list(labels), n)
        yield total
        hist = HistogramMetricFamily(
            "abplatform_router_request_seconds", "Router latency per variant (s)",
            labels=["experiment", "variant"],
        )  # fmt: skip
        for key, counts in list(self.buckets.items()):
            cumulative, running = [], 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                running += n
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", running))
            hist.add_metric(list(key), cumulative, self.sums[key])
        yield hist
        yield from self._writer_metrics()
        if self.shadows is not None:
            calls = CounterMetricFamily(
                "abplatform_router_shadow_calls", "Shadow calls", labels=["outcome"]
            )
            calls.add_metric(["started"], self.shadows.started)
            calls.add_metric(["shed_full"], self.shadows.shed_full)
            calls.add_metric(["shed_busy"], self.shadows.shed_busy)
            yield calls
            yield GaugeMetricFamily(
                "abplatform_router_shadow_in_flight", "Shadow calls running",
                value=self.shadows.in_flight,
            )  # fmt: skip

    def _writer_metrics(self) -> Iterator[Any]:
        w = self.writer
        if w is None:
            return
        yield GaugeMetricFamily(
            "abplatform_router_log_pending_rows", "Log rows buffered in memory", value=w.pending
        )
        yield GaugeMetricFamily(
            "abplatform_router_log_spooled_rows", "Log rows in spool files, waiting",
            value=w.spooled_rows(),
        )  # fmt: skip
        rows = CounterMetricFamily(
            "abplatform_router_log_rows", "Log rows by what happened to them", labels=["outcome"]
        )
        s = w.stats
        for outcome, n in (("written", s.requests_written + s.outcomes_written),
                           ("spooled", s.spooled), ("replayed", s.replayed),
                           ("dropped", s.dropped)):  # fmt: skip
            rows.add_metric([outcome], n)
        yield rows
        yield CounterMetricFamily(
            "abplatform_router_log_failed_writes", "Failed log writes", value=s.failed_flushes
        )


_METRICS: RouterMetrics | None = None


def router_metrics() -> RouterMetrics:
    """The process's router metrics, registered in the default registry on first use."""
    global _METRICS
    if _METRICS is None:
        _METRICS = RouterMetrics()
        REGISTRY.register(_METRICS)
    return _METRICS


__all__ = ["BUCKETS", "RouterMetrics", "router_metrics"]
