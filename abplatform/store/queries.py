"""Queries that turn the rollups into sufficient statistics (DB layer).

Everything is aggregated in PostgreSQL over the rollup tables the log writer maintains
(:mod:`abplatform.store.rollups`: one row per unit, not per request); no raw request row
leaves the database. Two levels: per unit (the unit of randomisation), then per variant,
so per-request metrics become ratio metrics with the unit-level sums, sums of squares and
cross-products the delta method needs (:class:`abplatform.core.metrics.Moments`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.core.metrics import (
    BINS,
    CALL_COLUMNS,
    FEEDBACK_COLUMNS,
    FEEDBACK_PAIR,
    RATIO_PAIRS,
    REQUEST_COLUMNS,
    CallTotals,
    FeedbackData,
    Moments,
    PhaseData,
    VariantData,
)
from abplatform.core.stats import LatencyHistogram
from abplatform.core.views import ExperimentView, PhaseView

MULTI_EXPOSURE_UNITS = """
    SELECT unit_id FROM unit_totals
    WHERE experiment_id = :e AND phase_id = :p
    GROUP BY unit_id HAVING count(DISTINCT variant_id) > 1
"""
"""The one definition of a multi-exposure unit: assigned more than one variant *within*
the analysed phase ``:p`` of experiment ``:e``. A unit that a weight change moved to
another variant is not multi-exposed: in each phase it has one variant and is analysed
in it (the all-phases analysis keeps the phases apart as strata)."""

UNITS_CTE = f"""
multi AS MATERIALIZED ({MULTI_EXPOSURE_UNITS}),
u AS MATERIALIZED (
    SELECT t.unit_id, min(t.variant_id) AS variant_id,
           {", ".join(f"sum(t.{c})::float8 AS {c}" for c in REQUEST_COLUMNS)},
           bool_or(m.unit_id IS NOT NULL) AS is_multi
    FROM unit_totals t LEFT JOIN multi m ON m.unit_id = t.unit_id
    WHERE t.experiment_id = :e AND t.phase_id = :p
    GROUP BY t.unit_id
)"""
"""Each unit of phase ``:p`` with its variant, its request sums and its multi-exposure flag."""


def moments_sql(columns: Sequence[str], pairs: Sequence[tuple[str, str]], prefix: str = "") -> str:
    """SQL select items for :class:`Moments` over rows with the given columns: ``n``
    and three JSON objects (sums, sums of squares, sums of products ``"a*b"``)."""

    def obj(items: list[tuple[str, str]]) -> str:
        return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in items) + ")"

    c = [(col, f"{prefix}{col}::float8") for col in columns]
    return ", ".join(
        (
            "count(*) AS n",
            obj([(name, f"sum({expr})") for name, expr in c]) + " AS sums",
            obj([(name, f"sum({expr} * {expr})") for name, expr in c]) + " AS squares",
            obj([(f"{a}*{b}", f"sum({prefix}{a}::float8 * {prefix}{b})") for a, b in pairs])
            + " AS products",
        )
    )


def to_moments(n: Any, sums: Any, squares: Any, products: Any) -> Moments:
    """A :class:`Moments` from one row of :func:`moments_sql` items."""

    def load(x: Any) -> dict[str, float]:
        data = json.loads(x) if isinstance(x, str) else x
        return {k: float(v or 0.0) for k, v in data.items()}

    prods = {tuple(k.split("*", 1)): v for k, v in load(products).items()}
    return Moments(int(n), load(sums), load(squares), prods)  # type: ignore[arg-type]


_PHASE_SQL = f"""
WITH {UNITS_CTE}
SELECT 'units' AS kind, variant_id, is_multi, NULL AS metric,
       {moments_sql(REQUEST_COLUMNS, RATIO_PAIRS)}, NULL::bool AS binary_single
FROM u GROUP BY variant_id, is_multi
UNION ALL
SELECT 'feedback', u.variant_id, u.is_multi, o.metric,
       {moments_sql(FEEDBACK_COLUMNS, [FEEDBACK_PAIR], prefix="o.")},
       bool_and(o.all_binary AND o.count = 1)
FROM unit_outcomes o JOIN u ON u.unit_id = o.unit_id
WHERE o.experiment_id = :e AND o.phase_id = :p
GROUP BY u.variant_id, u.is_multi, o.metric
"""
"""Per variant (and multi-exposure flag): the request moments of its units, and per
feedback metric the moments of its units with a value, in one pass over the units."""


def latency_buckets(
    session: Session, experiment_id: int, phase_id: int
) -> dict[int, dict[int, int]]:
    """``{variant_id: {bucket: count}}`` of successful requests' latency (ms) in one phase,
    from the rollup (buckets of :data:`abplatform.core.metrics.BINS`). Includes every
    enrolled unit (a histogram cannot drop individual units)."""
    rows = session.execute(
        sa.text(
            "SELECT variant_id, bucket, count FROM latency_buckets "
            "WHERE experiment_id = :e AND phase_id = :p"
        ),
        {"e": experiment_id, "p": phase_id},
    ).all()
    out: dict[int, dict[int, int]] = {}
    for variant_id, bucket, count in rows:
        out.setdefault(variant_id, {})[int(bucket)] = int(count)
    return out


_CALLS_SQL = f"""
SELECT t.kind, t.variant_id, t.step, t.app_id, coalesce(r.name, '') AS route, t.rule,
       {", ".join(f"sum(t.{c})::float8" for c in CALL_COLUMNS)}
FROM call_totals t LEFT JOIN routes r ON r.id = t.route_id
WHERE t.experiment_id = :e AND t.phase_id = :p
GROUP BY t.kind, t.variant_id, t.step, t.app_id, r.name, t.rule
"""
_CALL_BUCKETS_SQL = """
SELECT b.kind, b.variant_id, b.step, b.app_id, coalesce(r.name, '') AS route, b.rule, b.bucket,
       sum(b.count)
FROM call_latency_buckets b LEFT JOIN routes r ON r.id = b.route_id
WHERE b.experiment_id = :e AND b.phase_id = :p
GROUP BY b.kind, b.variant_id, b.step, b.app_id, r.name, b.rule, b.bucket
"""


def fetch_calls(
    session: Session, experiment: ExperimentView, phase: PhaseView
) -> tuple[CallTotals, ...]:
    """The phase's call slices from the ``call_totals`` rollups: each pipeline step and
    each shadow app per variant, and the requests per route rule (over all variants)."""
    params = {"e": experiment.id, "p": phase.id}
    keys = {v.id: v.key for v in experiment.variants}
    hists: dict[tuple[object, ...], dict[int, int]] = {}
    for *key, bucket, count in session.execute(sa.text(_CALL_BUCKETS_SQL), params).all():
        hists.setdefault(tuple(key), {})[int(bucket)] = int(count)
    merged: dict[tuple[object, ...], CallTotals] = {}
    for kind, variant_id, step, app, route, rule, *sums in session.execute(
        sa.text(_CALLS_SQL), params
    ).all():
        hist = LatencyHistogram.from_buckets(
            hists.get((kind, variant_id, step, app, route, rule), {}), BINS
        )
        request = kind == "request"
        totals = CallTotals(
            kind, None if request else keys.get(variant_id), int(step), "" if request else app,
            dict(zip(CALL_COLUMNS, sums, strict=True)), hist, route or None, rule or None,
            experiment.name if request else None,
        )  # fmt: skip
        merged[totals.key] = merged[totals.key] + totals if totals.key in merged else totals
    return tuple(merged.values())


def fetch_phase_data(
    session: Session,
    experiment: ExperimentView,
    phase: PhaseView,
    *,
    include_multi: bool = False,
) -> PhaseData:
    """The sufficient statistics of one phase, per variant key, from the rollups.

    A multi-exposure unit (see :data:`MULTI_EXPOSURE_UNITS`) is left out unless
    ``include_multi``, and counted either way. Units are analysed by their *assigned*
    variant (intention to treat), whatever a fallback served. Feedback metrics count only
    units with at least one value of the metric. The latency histogram keeps every
    enrolled unit.
    """
    params = {"e": experiment.id, "p": phase.id}
    keys = {v.id: v.key for v in experiment.variants}
    requests: dict[str, Moments] = {}
    feedback: dict[str, dict[str, FeedbackData]] = {}
    multi = 0
    for kind, variant_id, is_multi, metric, *m, binary in session.execute(
        sa.text(_PHASE_SQL), params
    ).all():
        moments = to_moments(*m)
        if kind == "units" and is_multi:
            multi += moments.n
        if is_multi and not include_multi:
            continue
        key = keys[variant_id]
        if kind == "units":
            requests[key] = requests[key] + moments if key in requests else moments
        else:
            fb = FeedbackData(moments, bool(binary))
            acc = feedback.setdefault(key, {})
            acc[metric] = acc[metric] + fb if metric in acc else fb
    hists = latency_buckets(session, experiment.id, phase.id)
    variants = {
        key: VariantData(
            requests=requests.get(key, Moments()),
            latency=LatencyHistogram.from_buckets(hists.get(vid, {}), BINS),
            feedback=feedback.get(key, {}),
        )
        for vid, key in keys.items()
    }
    calls = fetch_calls(session, experiment, phase)
    return PhaseData(phase.number, variants, multi, include_multi, calls)


def fetch_phases_data(
    session: Session,
    experiment: ExperimentView,
    phases: Sequence[PhaseView],
    *,
    include_multi: bool = False,
) -> list[PhaseData]:
    """:func:`fetch_phase_data` of each of ``phases``, in order (for the all-phases
    analysis, which keeps them apart as strata)."""
    return [fetch_phase_data(session, experiment, p, include_multi=include_multi) for p in phases]


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
                         sum(requests) AS requests
                  FROM unit_totals GROUP BY experiment_id) t
            FULL JOIN (SELECT experiment_id, sum(count) AS feedback
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
            SELECT (SELECT coalesce(sum(requests), 0) FROM unit_totals WHERE experiment_id = :e),
                   (SELECT coalesce(sum(count), 0) FROM unit_outcomes WHERE experiment_id = :e)
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


__all__ = [
    "MULTI_EXPOSURE_UNITS",
    "UNITS_CTE",
    "ExperimentActivity",
    "LastChange",
    "Watermark",
    "activity",
    "fetch_calls",
    "fetch_phase_data",
    "fetch_phases_data",
    "last_changes",
    "latency_buckets",
    "moments_sql",
    "to_moments",
    "watermark",
]
