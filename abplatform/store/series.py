"""Cumulative slices of a phase over time, for the cumulative-lift chart (DB layer).

The rollups have no time dimension, so this reads the phase's log rows, bucketed into
equal time buckets, and aggregates them with the rollups' own definitions
(:func:`abplatform.store.rollups.unit_sums` and friends). A unit's sums of squares are
additive over time through their increments: ``c**2 - (c - d)**2 = d (2c - d)`` where
``c`` is the unit's running total and ``d`` its increment in the bucket (and likewise
``c_a c_b - (c_a - d_a)(c_b - d_b)`` for products). Summing bucket increments gives, at
each bucket's end, exactly the :class:`~abplatform.core.metrics.PhaseData` that
:func:`abplatform.store.queries.fetch_phase_data` would return for the data so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.core import metrics as catalogue
from abplatform.core.metrics import (
    BINS,
    FEEDBACK_COLUMNS,
    FEEDBACK_PAIR,
    RATIO_PAIRS,
    REQUEST_COLUMNS,
    FeedbackData,
    Moments,
    PhaseData,
    VariantData,
)
from abplatform.core.stats import LatencyHistogram
from abplatform.core.views import ExperimentView, PhaseView
from abplatform.store import rollups
from abplatform.store.queries import UNITS_CTE, to_moments

DEFAULT_TIME_BUCKETS = 30
"""Points on the cumulative-lift chart (equal time buckets over the phase)."""


@dataclass(frozen=True)
class TimeGrid:
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
        """Bind parameters of :meth:`sql`."""
        return {"edges": [self.end_of(b) for b in range(self.buckets - 1)]}

    def end_of(self, bucket: int) -> datetime:
        """The end of ``bucket`` (exclusive): cumulative points are labelled with it."""
        return self.start + timedelta(seconds=self.width_s * (bucket + 1))

    @classmethod
    def over(cls, phase: PhaseView, buckets: int, now: datetime | None = None) -> TimeGrid:
        """``buckets`` buckets from the phase's start to its end (or ``now`` while it runs)."""
        end = phase.ended_at or now or datetime.now(UTC)
        span = max((end - phase.started_at).total_seconds(), 1e-3)
        return cls(phase.started_at, span / buckets, buckets)


def _increment_items(columns: Sequence[str], pairs: Sequence[tuple[str, str]]) -> str:
    """Select items of bucket increments of :class:`Moments` over rows with ``d_<c>``
    (increment in the bucket) and ``c_<c>`` (the unit's running total)."""

    def obj(items: list[tuple[str, str]]) -> str:
        return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in items) + ")"

    return ", ".join(
        (
            "count(*) FILTER (WHERE rn = 1) AS n",
            obj([(c, f"sum(d_{c})") for c in columns]) + " AS sums",
            obj([(c, f"sum(d_{c} * (2 * c_{c} - d_{c}))") for c in columns]) + " AS squares",
            obj(
                [
                    (f"{a}*{b}", f"sum(c_{a} * d_{b} + d_{a} * c_{b} - d_{a} * d_{b})")
                    for a, b in pairs
                ]
            )
            + " AS products",
        )
    )


def _running(columns: Sequence[str], source: str) -> str:
    return ", ".join(
        f"{source}.{c}::float8 AS d_{c}, sum({source}.{c}::float8) OVER w AS c_{c}" for c in columns
    )


def _phase_rows(table: str, grid: TimeGrid) -> str:
    return (
        f"(SELECT *, {grid.sql('created_at')} AS b FROM {table} "
        "WHERE experiment_id = :e AND phase_id = :p) AS rows"
    )


def _request_sql(grid: TimeGrid) -> str:
    per_bucket = rollups.unit_sums(_phase_rows("requests", grid), extra_keys=("b",))
    sums = ", ".join(f"sum({c}) AS {c}" for c in REQUEST_COLUMNS)
    return f"""
    WITH {UNITS_CTE},
    r AS (SELECT unit_id, b, {sums} FROM ({per_bucket}) s GROUP BY unit_id, b),
    c AS (
        SELECT u.variant_id, r.b, row_number() OVER w AS rn, {_running(REQUEST_COLUMNS, "r")}
        FROM r JOIN u ON u.unit_id = r.unit_id
        WHERE :include_multi OR NOT u.is_multi
        WINDOW w AS (PARTITION BY r.unit_id ORDER BY r.b)
    )
    SELECT variant_id, b, {_increment_items(REQUEST_COLUMNS, RATIO_PAIRS)}
    FROM c GROUP BY 1, 2
    """


def _feedback_sql(grid: TimeGrid) -> str:
    per_bucket = rollups.outcome_sums(_phase_rows("outcomes", grid), extra_keys=("b",))
    return f"""
    WITH {UNITS_CTE},
    o AS (SELECT * FROM ({per_bucket}) s WHERE metric = :metric),
    c AS (
        SELECT u.variant_id, o.b, row_number() OVER w AS rn, {_running(FEEDBACK_COLUMNS, "o")},
               bool_and(o.all_binary) OVER (PARTITION BY o.unit_id) AND
                   sum(o.count) OVER (PARTITION BY o.unit_id) = 1 AS single_binary
        FROM o JOIN u ON u.unit_id = o.unit_id
        WHERE :include_multi OR NOT u.is_multi
        WINDOW w AS (PARTITION BY o.unit_id ORDER BY o.b)
    )
    SELECT variant_id, b, {_increment_items(FEEDBACK_COLUMNS, [FEEDBACK_PAIR])},
           bool_and(single_binary)
    FROM c GROUP BY 1, 2
    """


def _latency_sql(grid: TimeGrid) -> str:
    return rollups.latency_counts(_phase_rows("requests", grid), extra_keys=("b",))


def _cumulate(increments: dict[int, list[Moments]]) -> dict[int, list[Moments]]:
    out: dict[int, list[Moments]] = {}
    for vid, series in increments.items():
        running, acc = Moments(), []
        for m in series:
            running = running + m
            acc.append(running)
        out[vid] = acc
    return out


def fetch_cumulative(
    session: Session,
    experiment: ExperimentView,
    phase: PhaseView,
    metric: str,
    *,
    buckets: int = DEFAULT_TIME_BUCKETS,
    include_multi: bool = False,
    now: datetime | None = None,
) -> list[tuple[datetime, PhaseData]]:
    """For each of ``buckets`` equal time buckets of ``phase``, the bucket's end and the
    phase's data up to it, as far as ``metric`` needs (its source only: requests, latency
    histogram or one feedback metric). Multi-exposure units are handled as in
    :func:`abplatform.store.queries.fetch_phase_data`."""
    grid = TimeGrid.over(phase, buckets, now)
    source = catalogue.metric(metric).source
    params = {
        "e": experiment.id,
        "p": phase.id,
        "include_multi": include_multi,
        "metric": metric,
        **grid.params,
    }
    empty = [Moments() for _ in range(buckets)]
    requests: dict[int, list[Moments]] = {}
    feedback: dict[int, list[Moments]] = {}
    binary = True
    hists: dict[int, list[list[int]]] = {}
    if source == "requests":
        for vid, b, *m in session.execute(sa.text(_request_sql(grid)), params).all():
            requests.setdefault(vid, list(empty))[int(b)] = to_moments(*m)
    elif source == "feedback":
        for vid, b, *m, is_binary in session.execute(sa.text(_feedback_sql(grid)), params):
            feedback.setdefault(vid, list(empty))[int(b)] = to_moments(*m)
            binary = binary and bool(is_binary)
    else:
        for _, _, vid, bucket, b, count in session.execute(sa.text(_latency_sql(grid)), params):
            rows = hists.setdefault(vid, [[0] * (BINS.n_bins + 2) for _ in range(buckets)])
            rows[int(b)][int(bucket)] += int(count)
    requests, feedback = _cumulate(requests), _cumulate(feedback)
    slices: list[tuple[datetime, PhaseData]] = []
    running = {vid: [0] * (BINS.n_bins + 2) for vid in hists}
    for b in range(buckets):
        variants = {}
        for v in experiment.variants:
            if v.id in hists:
                running[v.id] = [x + y for x, y in zip(running[v.id], hists[v.id][b], strict=True)]
            fb = feedback.get(v.id)
            variants[v.key] = VariantData(
                requests=requests[v.id][b] if v.id in requests else Moments(),
                latency=LatencyHistogram(BINS, tuple(running.get(v.id, ()))) if v.id in hists
                else catalogue.empty_histogram(),
                feedback={metric: FeedbackData(fb[b], binary)} if fb else {},
            )  # fmt: skip
        slices.append((grid.end_of(b), PhaseData(phase.number, variants, 0, include_multi)))
    return slices


__all__ = ["DEFAULT_TIME_BUCKETS", "TimeGrid", "fetch_cumulative"]
