"""What the charts plot: cumulative results over time, and the latency distribution.

Cumulative results are the analysis applied to cumulative slices of a phase.

The store returns one :class:`~abplatform.core.metrics.PhaseData` per time bucket, each
holding all data up to the bucket's end; :func:`cumulative_lift` runs the catalogue's
statistic and the always-valid sequential test on each, so the last point equals the
report's lift and lift CI for the same phase, metric and alpha. Points start once both
arms have :data:`MIN_CHART_UNITS` units (observations, for latency percentiles): before
that the confidence sequence is so wide (thousands of percent) that it hides the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from abplatform.core import metrics as catalogue
from abplatform.core.metrics import PhaseData
from abplatform.core.stats import messages, sequential_test
from abplatform.core.views import ExperimentView

MIN_CHART_UNITS = 20
"""Units (observations, for latency percentiles) each arm needs before the cumulative
lift is drawn."""


@dataclass(frozen=True)
class CumulativePoint:
    """One treatment against the control with all data up to ``at`` (UTC).

    ``lift`` is relative (a fraction of the control's value) and ``ci_low``/``ci_high``
    bound its always-valid confidence sequence; all three are None while the data do not
    allow a test yet (``note`` says why). ``units_*`` are the units (observations, for
    latency quantiles) in each arm so far.
    """

    at: datetime
    variant: str
    units_control: int
    units_treatment: int
    lift: float | None
    ci_low: float | None
    ci_high: float | None
    note: str | None


@dataclass(frozen=True)
class CumulativeLift:
    """The cumulative lift of ``metric`` in one phase, one series per treatment."""

    metric: str
    phase: int
    alpha: float
    lower_is_better: bool
    points: tuple[CumulativePoint, ...]


def cumulative_lift(
    config: ExperimentView,
    metric: str,
    slices: Sequence[tuple[datetime, PhaseData]],
    *,
    phase: int,
    alpha: float = 0.05,
    min_units: int = MIN_CHART_UNITS,
) -> CumulativeLift:
    """The relative lift of each treatment over the control on ``metric`` at the end of
    each cumulative slice ``(at, data)``, with its always-valid confidence sequence at
    level ``1 - alpha``. A metric without data, or a slice where an arm has fewer than
    ``min_units`` units, gives points with ``lift=None`` (``note`` says why)."""
    entry = catalogue.metric(metric)
    control = config.control.key
    keys = [v.key for v in config.variants]
    points: list[CumulativePoint] = []
    per_slice = [(at, entry.statistics(data, keys)) for at, data in slices]
    for v in config.variants:
        if v.is_control:
            continue
        for at, stats in per_slice:
            c, t = stats[control], stats[v.key]
            res = sequential_test(c, t, difference="relative", alpha=alpha)
            ok = res.informative and res.ci is not None and math.isfinite(res.estimate)
            few = min(c.n, t.n) < min_units
            note = (
                f"fewer than {min_units} units in an arm so far"
                if few
                else messages.sentence(res.error_message)
            )
            ok = ok and not few
            points.append(
                CumulativePoint(
                    at=at,
                    variant=v.key,
                    units_control=c.n,
                    units_treatment=t.n,
                    lift=res.estimate if ok else None,
                    ci_low=res.ci[0] if ok and res.ci else None,
                    ci_high=res.ci[1] if ok and res.ci else None,
                    note=None if ok else note,
                )
            )
    return CumulativeLift(
        metric=metric,
        phase=phase,
        alpha=alpha,
        lower_is_better=entry.lower_is_better,
        points=tuple(points),
    )


# ----------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyBin:
    """Successful requests of one variant with latency in ``[low_ms, high_ms)``.

    ``share`` is the fraction of that variant's successful requests in the bin.
    """

    variant: str
    low_ms: float
    high_ms: float
    requests: int
    share: float


def latency_distribution(
    config: ExperimentView, data: PhaseData, *, bins_per_decade: int = 20
) -> list[LatencyBin]:
    """Histogram of successful requests' latency per variant, on log-spaced bins
    (``bins_per_decade`` must divide the report's 100 per decade), trimmed to the range
    with data: the report's own histogram, merged into wider bins.

    Raises:
        ValueError: ``bins_per_decade`` does not divide 100.
    """
    bins = catalogue.BINS
    per = round(bins.n_bins / math.log10(bins.upper / bins.lower))
    if bins_per_decade < 1 or per % bins_per_decade:
        raise ValueError(f"bins_per_decade must divide {per}, got {bins_per_decade}")
    merge = per // bins_per_decade
    top = bins.n_bins // merge

    def coarse(bucket: int) -> int:
        if bucket == 0:
            return -1  # below bins.lower
        return top if bucket > bins.n_bins else (bucket - 1) // merge

    def bounds(k: int) -> tuple[float, float]:
        if k < 0:
            return 0.0, bins.lower
        if k >= top:
            return bins.upper, math.inf
        return float(bins.edges[k * merge]), float(bins.edges[(k + 1) * merge])

    counts: dict[str, dict[int, int]] = {}
    for v in config.variants:
        acc = counts.setdefault(v.key, {})
        for bucket, n in enumerate(data.variant(v.key).latency.counts):
            if n:
                acc[coarse(bucket)] = acc.get(coarse(bucket), 0) + n
    used = sorted({k for acc in counts.values() for k in acc})
    if not used:
        return []
    out: list[LatencyBin] = []
    for v in config.variants:
        acc = counts[v.key]
        total = sum(acc.values())
        if not total:
            continue
        for k in range(used[0], used[-1] + 1):
            low, high = bounds(k)
            n = acc.get(k, 0)
            out.append(LatencyBin(v.key, low, high, n, n / total))
    return out


__all__ = [
    "MIN_CHART_UNITS",
    "CumulativeLift",
    "CumulativePoint",
    "LatencyBin",
    "cumulative_lift",
    "latency_distribution",
]
