"""SQL that turns the logs into sufficient statistics (DB layer).

Everything is aggregated in PostgreSQL (``GROUP BY``) over the rollup tables that the log
writer maintains (:mod:`abplatform.store.rollups`: one row per unit, not per request): no raw
request row leaves the database. Two levels: per unit (the unit of randomisation), then
per variant, so per-request metrics become ratio metrics with the unit-level sums, sums of
squares and cross-products that the delta method needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class UnitAggregates:
    """Per variant, sums over units of per-unit request counts, errors and latency.

    ``reqs``/``errs``/``ok``/``lat`` are per-unit totals (requests, failed requests,
    successful requests, summed latency of successful requests in ms); ``*_ss`` are sums
    of squares over units and ``x_y`` sums of products, for the delta method.
    """

    variant_id: int
    units: int
    reqs: float
    reqs_ss: float
    errs: float
    errs_ss: float
    errs_reqs: float
    ok: float
    ok_ss: float
    lat: float
    lat_ss: float
    lat_ok: float


@dataclass(frozen=True)
class MetricAggregates:
    """Per variant and feedback metric: per-unit outcome sums (``total``) and counts."""

    variant_id: int
    metric: str
    units: int
    total: float
    total_ss: float
    cnt: float
    cnt_ss: float
    total_cnt: float
    binary_single: bool


_PHASE_SQL = """
WITH multi AS MATERIALIZED (
    SELECT unit_id FROM unit_totals
    WHERE experiment_id = :e AND phase_id <= :p
    GROUP BY unit_id HAVING count(DISTINCT variant_id) > 1
),
u AS MATERIALIZED (
    SELECT t.unit_id, min(t.variant_id) AS variant_id,
           sum(t.reqs)::float8 AS reqs, sum(t.errs)::float8 AS errs,
           sum(t.oks)::float8 AS ok, sum(t.lat_sum) AS lat,
           bool_or(m.unit_id IS NOT NULL) AS is_multi
    FROM unit_totals t LEFT JOIN multi m ON m.unit_id = t.unit_id
    WHERE t.experiment_id = :e AND t.phase_id = :p
    GROUP BY t.unit_id
)
SELECT 'units' AS kind, variant_id, is_multi, NULL AS metric, count(*) AS units,
       sum(reqs), sum(reqs * reqs), sum(errs), sum(errs * errs), sum(errs * reqs),
       sum(ok), sum(ok * ok), sum(lat), sum(lat * lat), sum(lat * ok), NULL::bool
FROM u GROUP BY variant_id, is_multi
UNION ALL
SELECT 'metric', u.variant_id, u.is_multi, o.metric, count(*),
       sum(o.total), sum(o.total * o.total), sum(o.cnt::float8), sum(o.cnt::float8 * o.cnt),
       sum(o.total * o.cnt), NULL, NULL, NULL, NULL, NULL, bool_and(o.all_binary AND o.cnt = 1)
FROM unit_outcomes o JOIN u ON u.unit_id = o.unit_id
WHERE o.experiment_id = :e AND o.phase_id = :p
GROUP BY u.variant_id, u.is_multi, o.metric
"""


def phase_aggregates(
    session: Session, experiment_id: int, phase_id: int, *, include_multi: bool
) -> tuple[list[UnitAggregates], int, list[MetricAggregates]]:
    """Per-variant unit aggregates, the multi-exposure unit count, and per-variant feedback
    metric aggregates of one phase, in one query over the rollup tables.

    A multi-exposure unit was assigned more than one variant in this or an earlier phase;
    unless ``include_multi``, it is left out (and counted). Units are analysed by their
    *assigned* variant (intention to treat), whatever a fallback served. Feedback metrics
    count only units with at least one outcome of the metric.
    """
    rows = session.execute(sa.text(_PHASE_SQL), {"e": experiment_id, "p": phase_id}).all()
    units: dict[int, list[float]] = {}
    metrics: dict[tuple[int, str], list[Any]] = {}
    multi = 0
    for kind, variant_id, is_multi, metric, n, *values in rows:
        if kind == "units" and is_multi:
            multi += int(n)
        if is_multi and not include_multi:
            continue
        if kind == "units":
            acc = units.setdefault(variant_id, [0.0] * 11)
            for i, v in enumerate([n, *values[:10]]):
                acc[i] += float(v or 0.0)
        else:
            macc = metrics.setdefault((variant_id, metric), [0.0] * 6 + [True])
            for i, v in enumerate([n, *values[:5]]):
                macc[i] += float(v or 0.0)
            macc[6] = macc[6] and bool(values[10])
    unit_out = [UnitAggregates(vid, int(v[0]), *v[1:]) for vid, v in units.items()]
    metric_out = [
        MetricAggregates(vid, metric, int(v[0]), *v[1:6], binary_single=v[6])
        for (vid, metric), v in metrics.items()
    ]
    return unit_out, multi, metric_out


def latency_buckets(
    session: Session, experiment_id: int, phase_id: int
) -> dict[int, dict[int, int]]:
    """``{variant_id: {bucket: count}}`` of successful requests' latency (ms) in one phase,
    from the rollup (buckets of :data:`abplatform.store.rollups.BINS`). Includes every enrolled
    unit (a histogram cannot drop individual units)."""
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
