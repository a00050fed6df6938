"""Read-only queries the dashboard needs beyond the service and the report (DB layer).

The Streamlit pages hold no SQL: they call :mod:`abplatform.service.experiments`,
:func:`abplatform.service.reports.build_report` and the functions here. Everything is aggregated
in PostgreSQL; no raw request row leaves the database.

* :func:`activity` - enrolled units, requests and feedback per experiment (overview), from
  the rollups the log writer maintains (:mod:`abplatform.store.rollups`).
* :func:`watermark` - a cheap fingerprint of the data a report sees (a cache key).
* :func:`last_changes` - the newest audit entry per experiment.
* :func:`cumulative_lift` - the treatment-vs-control lift of one metric over time with
  its always-valid confidence sequence: cumulative sufficient statistics per time bucket
  from SQL, then :func:`abplatform.core.stats.sequential_test` on each cumulative point. The
  last point equals the report's lift and lift CI for the same phase, metric and alpha.
  The rollups have no time dimension, so this one reads the request log of the phase.
* :func:`latency_distribution` - the report's per-variant latency histogram (a rollup),
  merged into wider bins for drawing.

Units: latencies in ms, lifts and shares as fractions, timestamps ``timestamptz`` (UTC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.core.stats import (
    LatencyBins,
    LatencyHistogram,
    ProportionStatistic,
    RatioStatistic,
    Statistic,
    sequential_test,
)
from abplatform.service.experiments import ExperimentView, PhaseView
from abplatform.service.reports import LATENCY_QUANTILES, LOWER_IS_BETTER
from abplatform.store import queries
from abplatform.store.rollups import BINS

DEFAULT_TIME_BUCKETS = 30
"""Points on the cumulative-lift chart (equal time buckets over the phase)."""

# ----------------------------------------------------------------------------- overview


Watermark = tuple[int, int]
"""``(enrolled requests, feedback values)`` of an experiment as the rollups count them:
changes whenever the log writer adds a row that a report can see."""


@dataclass(frozen=True)
class ExperimentActivity:
    """Logged data of one experiment over all its phases, as the reports see it.

    ``units`` are the distinct enrolled units, ``requests`` their requests (failed ones
    too; requests of units outside the coverage are not counted), ``feedback`` the
    recorded feedback values.
    """

    experiment_id: int
    units: int
    requests: int
    feedback: int

    @property
    def watermark(self) -> Watermark:
        """The same fingerprint as :func:`watermark`."""
        return (self.requests, self.feedback)


def activity(session: Session) -> dict[int, ExperimentActivity]:
    """:class:`ExperimentActivity` of every experiment with data, by experiment id."""
    rows = session.execute(
        sa.text(
            """
            SELECT experiment_id, coalesce(t.units, 0), coalesce(t.requests, 0),
                   coalesce(o.feedback, 0)
            FROM (SELECT experiment_id, count(DISTINCT unit_id) AS units,
                         sum(reqs) AS requests
                  FROM unit_totals GROUP BY experiment_id) t
            FULL JOIN (SELECT experiment_id, sum(cnt) AS feedback
                       FROM unit_outcomes GROUP BY experiment_id) o USING (experiment_id)
            """
        )
    ).all()
    return {int(e): ExperimentActivity(int(e), int(u), int(n), int(f)) for e, u, n, f in rows}


def watermark(session: Session, experiment_id: int) -> Watermark:
    """The fingerprint of one experiment's data (see :data:`Watermark`)."""
    row = session.execute(
        sa.text(
            """
            SELECT (SELECT coalesce(sum(reqs), 0) FROM unit_totals WHERE experiment_id = :e),
                   (SELECT coalesce(sum(cnt), 0) FROM unit_outcomes WHERE experiment_id = :e)
            """
        ),
        {"e": experiment_id},
    ).one()
    return (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class LastChange:
    """The newest audit entry of an experiment: what was done, by whom, when (UTC)."""

    action: str
    actor: str
    at: datetime


def last_changes(session: Session) -> dict[int, LastChange]:
    """The newest audit entry per experiment, by experiment id."""
    rows = session.execute(
        sa.text(
            """
            SELECT DISTINCT ON (experiment_id) experiment_id, action, actor, at
            FROM audit_log WHERE experiment_id IS NOT NULL
            ORDER BY experiment_id, id DESC
            """
        )
    ).all()
    return {int(e): LastChange(action, actor, at) for e, action, actor, at in rows}


# ----------------------------------------------------------------------------- cumulative


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


@dataclass(frozen=True)
class _TimeGrid:
    """``buckets`` equal time buckets from ``start``; ``width_s`` seconds each."""

    start: datetime
    width_s: float
    buckets: int

    @staticmethod
    def sql(column: str) -> str:
        """Bucket index 0..buckets-1 of ``column``; times outside fall in the end buckets.

        ``width_bucket`` over the interior edges (a binary search on timestamps) is about
        twice as fast as arithmetic on ``extract(epoch ...)``, which is numeric.
        """
        return f"width_bucket({column}, CAST(:edges AS timestamptz[]))"

    @property
    def params(self) -> dict[str, list[datetime]]:
        return {"edges": [self.end_of(b) for b in range(self.buckets - 1)]}

    def end_of(self, bucket: int) -> datetime:
        """The end of ``bucket`` (exclusive): cumulative points are labelled with it."""
        return self.start + timedelta(seconds=self.width_s * (bucket + 1))


_UNITS_CTE = """
multi AS MATERIALIZED (
    SELECT unit_id FROM unit_totals
    WHERE experiment_id = :e AND phase_id <= :p
    GROUP BY unit_id HAVING min(variant_id) <> max(variant_id)
),
u AS MATERIALIZED (
    SELECT t.unit_id, min(t.variant_id) AS variant_id, bool_or(m.unit_id IS NOT NULL) AS is_multi
    FROM unit_totals t LEFT JOIN multi m ON m.unit_id = t.unit_id
    WHERE t.experiment_id = :e AND t.phase_id = :p
    GROUP BY t.unit_id
)
"""
"""Each unit of the phase with its analysed variant and multi-exposure flag, from the
``unit_totals`` rollup and as :mod:`abplatform.store.queries` defines them (``min <>
max`` is ``count(DISTINCT) > 1``)."""


def _request_series(
    session: Session, experiment_id: int, phase_id: int, grid: _TimeGrid, include_multi: bool
) -> dict[int, np.ndarray]:
    """Per variant id: a ``(buckets, 11)`` array of cumulative unit aggregates.

    Columns as :class:`abplatform.store.queries.UnitAggregates` after ``variant_id``:
    units, reqs, reqs_ss, errs, errs_ss, errs_reqs, ok, ok_ss, lat, lat_ss, lat_ok.
    A unit's sums of squares are additive over time through their increments:
    ``c**2 - (c - d)**2 = d (2c - d)`` where ``c`` is the unit's running total and ``d``
    its increment in the bucket (and likewise for products).
    """
    sql = f"""
    WITH {_UNITS_CTE},
    r AS (
        SELECT unit_id, {grid.sql("created_at")} AS b, count(*)::float8 AS reqs,
               (count(*) FILTER (WHERE status <> 'ok'))::float8 AS errs,
               (count(*) FILTER (WHERE status = 'ok'))::float8 AS ok,
               coalesce(sum(latency_ms) FILTER (WHERE status = 'ok'), 0) AS lat
        FROM requests
        WHERE experiment_id = :e AND phase_id = :p AND assigned_variant_id IS NOT NULL
        GROUP BY 1, 2
    ),
    c AS (
        SELECT u.variant_id, r.b, row_number() OVER w AS rn,
               r.reqs AS dr, r.errs AS de, r.ok AS dk, r.lat AS dl,
               sum(r.reqs) OVER w AS cr, sum(r.errs) OVER w AS ce,
               sum(r.ok) OVER w AS ck, sum(r.lat) OVER w AS cl
        FROM r JOIN u ON u.unit_id = r.unit_id
        WHERE :include_multi OR NOT u.is_multi
        WINDOW w AS (PARTITION BY r.unit_id ORDER BY r.b)
    )
    SELECT variant_id, b, count(*) FILTER (WHERE rn = 1),
           sum(dr), sum(dr * (2 * cr - dr)),
           sum(de), sum(de * (2 * ce - de)), sum(ce * dr + de * cr - de * dr),
           sum(dk), sum(dk * (2 * ck - dk)),
           sum(dl), sum(dl * (2 * cl - dl)), sum(cl * dk + dl * ck - dl * dk)
    FROM c GROUP BY 1, 2
    """
    params = {"e": experiment_id, "p": phase_id, "include_multi": include_multi, **grid.params}
    out: dict[int, np.ndarray] = {}
    for variant_id, bucket, *values in session.execute(sa.text(sql), params).all():
        arr = out.setdefault(int(variant_id), np.zeros((grid.buckets, 11)))
        arr[int(bucket)] = [float(x or 0.0) for x in values]
    return {k: np.cumsum(v, axis=0) for k, v in out.items()}


def _feedback_series(
    session: Session,
    experiment_id: int,
    phase_id: int,
    metric: str,
    grid: _TimeGrid,
    include_multi: bool,
) -> tuple[dict[int, np.ndarray], bool]:
    """Per variant id: ``(buckets, 6)`` cumulative units, total, total_ss, cnt, cnt_ss,
    total_cnt of feedback ``metric``; and whether every unit has one 0/1 value (then the
    metric is a proportion, as in the report). Outcomes count in their phase (as in the
    ``unit_outcomes`` rollup) and are timed by their own ``created_at``."""
    sql = f"""
    WITH {_UNITS_CTE},
    o AS (
        SELECT unit_id, {grid.sql("created_at")} AS b, count(*)::float8 AS cnt,
               sum(value) AS total, bool_and(value IN (0, 1)) AS bin
        FROM outcomes
        WHERE experiment_id = :e AND phase_id = :p AND metric = :metric
        GROUP BY 1, 2
    ),
    c AS (
        SELECT u.variant_id, o.b, o.bin, row_number() OVER w AS rn,
               o.total AS dt, o.cnt AS dc, sum(o.total) OVER w AS ct, sum(o.cnt) OVER w AS cc,
               bool_and(o.bin) OVER (PARTITION BY o.unit_id) AND
                   sum(o.cnt) OVER (PARTITION BY o.unit_id) = 1 AS single_binary
        FROM o JOIN u ON u.unit_id = o.unit_id
        WHERE :include_multi OR NOT u.is_multi
        WINDOW w AS (PARTITION BY o.unit_id ORDER BY o.b)
    )
    SELECT variant_id, b, count(*) FILTER (WHERE rn = 1),
           sum(dt), sum(dt * (2 * ct - dt)), sum(dc), sum(dc * (2 * cc - dc)),
           sum(ct * dc + dt * cc - dt * dc), bool_and(single_binary)
    FROM c GROUP BY 1, 2
    """
    params = {
        "e": experiment_id,
        "p": phase_id,
        "metric": metric,
        "include_multi": include_multi,
        **grid.params,
    }
    out: dict[int, np.ndarray] = {}
    binary = True
    for variant_id, bucket, *values, is_binary in session.execute(sa.text(sql), params).all():
        arr = out.setdefault(int(variant_id), np.zeros((grid.buckets, 6)))
        arr[int(bucket)] = [float(x or 0.0) for x in values]
        binary = binary and bool(is_binary)
    return {k: np.cumsum(v, axis=0) for k, v in out.items()}, binary


def _latency_series(
    session: Session, experiment_id: int, phase_id: int, grid: _TimeGrid, bins: LatencyBins
) -> dict[int, np.ndarray]:
    """Per variant id: ``(buckets, n_bins + 2)`` cumulative latency histograms (ms) of
    successful requests; every enrolled unit counts, as in the report's histogram."""
    sql = f"""
    SELECT assigned_variant_id, {grid.sql("created_at")}, {bins.sql("latency_ms")}, count(*)
    FROM requests
    WHERE experiment_id = :e AND phase_id = :p AND assigned_variant_id IS NOT NULL
      AND status = 'ok'
    GROUP BY 1, 2, 3
    """
    params = {"e": experiment_id, "p": phase_id, **grid.params}
    out: dict[int, np.ndarray] = {}
    for variant_id, bucket, lat_bucket, count in session.execute(sa.text(sql), params).all():
        arr = out.setdefault(int(variant_id), np.zeros((grid.buckets, bins.n_bins + 2), int))
        arr[int(bucket), int(lat_bucket)] += int(count)
    return {k: np.cumsum(v, axis=0) for k, v in out.items()}


def _grid(phase: PhaseView, buckets: int, now: datetime | None) -> _TimeGrid:
    end = phase.ended_at or now or datetime.now(UTC)
    span = max((end - phase.started_at).total_seconds(), 1e-3)
    return _TimeGrid(phase.started_at, span / buckets, buckets)


def _ratio(row: np.ndarray) -> RatioStatistic:
    n, m, mss, d, dss, md = row
    return RatioStatistic(
        n=int(n), m_sum=m, m_sum_squares=mss, d_sum=d, d_sum_squares=dss, m_d_sum_of_products=md
    )


def cumulative_lift(
    session: Session,
    experiment: ExperimentView,
    phase: PhaseView,
    metric: str,
    *,
    alpha: float = 0.05,
    buckets: int = DEFAULT_TIME_BUCKETS,
    include_multi: bool = False,
    now: datetime | None = None,
) -> CumulativeLift:
    """The relative lift of each treatment over the control on ``metric``, cumulatively
    over ``buckets`` equal time buckets of ``phase`` (from its start to its end, or to
    ``now`` while it runs), with the always-valid confidence sequence at level
    ``1 - alpha``.

    Metrics as in :mod:`abplatform.service.reports`: ``error_rate`` and ``latency_mean`` (ratio
    metrics per unit), ``latency_p50|p95|p99`` (histogram quantiles) and feedback
    metrics. Multi-exposure units are excluded unless ``include_multi``, as in the report
    (whose latency histogram, and so the quantiles, keeps every enrolled unit).
    A metric without data gives points with ``lift=None``.
    """
    grid = _grid(phase, buckets, now)
    ids = {v.id: v for v in experiment.variants}
    control = experiment.control
    stats: dict[int, list[Statistic]] = {}
    if metric in ("error_rate", "latency_mean"):
        series = _request_series(session, experiment.id, phase.id, grid, include_multi)
        cols = [0, 3, 4, 1, 2, 5] if metric == "error_rate" else [0, 8, 9, 6, 7, 10]
        for vid in ids:
            arr = series.get(vid, np.zeros((buckets, 11)))
            stats[vid] = [_ratio(arr[b, cols]) for b in range(buckets)]
    elif metric in LATENCY_QUANTILES:
        hists = _latency_series(session, experiment.id, phase.id, grid, BINS)
        empty = np.zeros((buckets, BINS.n_bins + 2), int)
        for vid in ids:
            arr = hists.get(vid, empty)
            stats[vid] = [
                LatencyHistogram(BINS, tuple(int(c) for c in arr[b])).quantile(
                    LATENCY_QUANTILES[metric]
                )
                for b in range(buckets)
            ]
    else:
        series, binary = _feedback_series(
            session, experiment.id, phase.id, metric, grid, include_multi
        )
        for vid in ids:
            arr = series.get(vid, np.zeros((buckets, 6)))
            stats[vid] = [
                ProportionStatistic(n=int(arr[b, 0]), sum=arr[b, 1]) if binary else _ratio(arr[b])
                for b in range(buckets)
            ]
    points: list[CumulativePoint] = []
    for v in experiment.variants:
        if v.is_control:
            continue
        for b in range(buckets):
            c, t = stats[control.id][b], stats[v.id][b]
            res = sequential_test(c, t, difference="relative", alpha=alpha)
            ok = res.informative and res.ci is not None and math.isfinite(res.estimate)
            points.append(
                CumulativePoint(
                    at=grid.end_of(b),
                    variant=v.key,
                    units_control=c.n,
                    units_treatment=t.n,
                    lift=res.estimate if ok else None,
                    ci_low=res.ci[0] if ok and res.ci else None,
                    ci_high=res.ci[1] if ok and res.ci else None,
                    note=None if ok else res.error_message,
                )
            )
    return CumulativeLift(
        metric=metric,
        phase=phase.number,
        alpha=alpha,
        lower_is_better=metric in LOWER_IS_BETTER,
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
    session: Session,
    experiment: ExperimentView,
    phase: PhaseView,
    *,
    bins_per_decade: int = 20,
) -> list[LatencyBin]:
    """Histogram of successful requests' latency per variant in ``phase``, on log-spaced
    bins (``bins_per_decade`` must divide the report's 100 per decade), trimmed to the
    range with data: the report's own histogram (the ``latency_buckets`` rollup, every
    enrolled unit), merged into wider bins."""
    per = round(BINS.n_bins / math.log10(BINS.upper / BINS.lower))
    if bins_per_decade < 1 or per % bins_per_decade:
        raise ValueError(f"bins_per_decade must divide {per}, got {bins_per_decade}")
    merge = per // bins_per_decade
    raw = queries.latency_buckets(session, experiment.id, phase.id)
    edges = BINS.edges

    def coarse(bucket: int) -> int:
        if bucket == 0:
            return -1  # below BINS.lower
        if bucket > BINS.n_bins:
            return BINS.n_bins // merge  # overflow
        return (bucket - 1) // merge

    def bounds(k: int) -> tuple[float, float]:
        if k < 0:
            return 0.0, BINS.lower
        if k >= BINS.n_bins // merge:
            return BINS.upper, math.inf
        return float(edges[k * merge]), float(edges[(k + 1) * merge])

    counts: dict[int, dict[int, int]] = {}
    for vid, buckets in raw.items():
        acc = counts.setdefault(vid, {})
        for bucket, n in buckets.items():
            acc[coarse(bucket)] = acc.get(coarse(bucket), 0) + n
    used = sorted({k for acc in counts.values() for k in acc})
    if not used:
        return []
    out: list[LatencyBin] = []
    for v in experiment.variants:
        acc = counts.get(v.id, {})
        total = sum(acc.values())
        if not total:
            continue
        for k in range(used[0], used[-1] + 1):
            low, high = bounds(k)
            n = acc.get(k, 0)
            out.append(LatencyBin(v.key, low, high, n, n / total))
    return out


__all__ = [
    "DEFAULT_TIME_BUCKETS",
    "CumulativeLift",
    "CumulativePoint",
    "ExperimentActivity",
    "LastChange",
    "LatencyBin",
    "Watermark",
    "activity",
    "cumulative_lift",
    "last_changes",
    "latency_distribution",
    "watermark",
]
