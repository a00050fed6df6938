"""SQL that turns the request and outcome logs into sufficient statistics (DB layer).

Everything is aggregated in PostgreSQL (``GROUP BY``): no raw request row leaves the
database. Two levels: first per unit (the unit of randomisation), then per variant, so
per-request metrics become ratio metrics with the unit-level sums, sums of squares and
cross-products that the delta method needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.stats import LatencyBins


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


_UNITS_CTE = """
multi AS MATERIALIZED (
    SELECT unit_id FROM requests
    WHERE experiment_id = :e AND phase_id <= :p AND assigned_variant_id IS NOT NULL
    GROUP BY unit_id HAVING count(DISTINCT assigned_variant_id) > 1
),
u AS MATERIALIZED (
    SELECT r.unit_id,
           min(r.assigned_variant_id) AS variant_id,
           count(*)::float8 AS reqs,
           (count(*) FILTER (WHERE r.status <> 'ok'))::float8 AS errs,
           (count(*) FILTER (WHERE r.status = 'ok'))::float8 AS ok,
           coalesce(sum(r.latency_ms) FILTER (WHERE r.status = 'ok'), 0) AS lat,
           bool_or(m.unit_id IS NOT NULL) AS is_multi
    FROM requests r LEFT JOIN multi m ON m.unit_id = r.unit_id
    WHERE r.experiment_id = :e AND r.phase_id = :p AND r.assigned_variant_id IS NOT NULL
    GROUP BY r.unit_id
)
"""


def unit_aggregates(
    session: Session, experiment_id: int, phase_id: int, *, include_multi: bool
) -> tuple[list[UnitAggregates], int]:
    """Per-variant unit aggregates of one phase, and the number of multi-exposure units.

    A multi-exposure unit was assigned more than one variant in this or an earlier phase;
    unless ``include_multi``, such units are left out (and counted). Units are analysed by
    their *assigned* variant (intention to treat), whatever a fallback served.
    """
    sql = f"""
    WITH {_UNITS_CTE}
    SELECT variant_id, is_multi, count(*) AS units,
           sum(reqs), sum(reqs * reqs), sum(errs), sum(errs * errs), sum(errs * reqs),
           sum(ok), sum(ok * ok), sum(lat), sum(lat * lat), sum(lat * ok)
    FROM u GROUP BY variant_id, is_multi
    """
    rows = session.execute(sa.text(sql), {"e": experiment_id, "p": phase_id}).all()
    merged: dict[int, list[float]] = {}
    multi = 0
    for row in rows:
        variant_id, is_multi, *values = row
        if is_multi:
            multi += int(values[0])
            if not include_multi:
                continue
        acc = merged.setdefault(variant_id, [0.0] * len(values))
        for i, v in enumerate(values):
            acc[i] += float(v or 0.0)
    out = [UnitAggregates(vid, int(v[0]), *v[1:]) for vid, v in merged.items()]
    return out, multi


def metric_aggregates(
    session: Session,
    experiment_id: int,
    phase_id: int,
    *,
    include_multi: bool,
) -> list[MetricAggregates]:
    """Per variant and feedback metric: sums over units of per-unit outcome totals/counts.

    An outcome belongs to the phase of its request; an outcome without a request id (unit
    level, e.g. imported) belongs to the phase whose time window contains it. Only units
    with at least one outcome of the metric are counted (``units``).
    """
    sql = f"""
    WITH {_UNITS_CTE},
    ph AS (SELECT started_at, coalesce(ended_at, 'infinity') AS ended_at
           FROM phases WHERE id = :p),
    o AS (
        SELECT o.unit_id, o.metric, count(*)::float8 AS cnt, sum(o.value) AS total,
               bool_and(o.value IN (0, 1)) AS bin
        FROM outcomes o
        LEFT JOIN requests r ON r.request_id = o.request_id
        CROSS JOIN ph
        WHERE o.experiment_id = :e
          AND ((o.request_id IS NOT NULL AND r.phase_id = :p)
               OR (o.request_id IS NULL AND o.created_at >= ph.started_at
                   AND o.created_at < ph.ended_at))
        GROUP BY o.unit_id, o.metric
    )
    SELECT u.variant_id, o.metric, count(*) AS units,
           sum(o.total), sum(o.total * o.total), sum(o.cnt), sum(o.cnt * o.cnt),
           sum(o.total * o.cnt), bool_and(o.bin AND o.cnt = 1)
    FROM o JOIN u ON u.unit_id = o.unit_id
    WHERE :include_multi OR NOT u.is_multi
    GROUP BY u.variant_id, o.metric
    """
    rows = session.execute(
        sa.text(sql), {"e": experiment_id, "p": phase_id, "include_multi": include_multi}
    ).all()
    return [
        MetricAggregates(
            variant_id=r[0],
            metric=r[1],
            units=int(r[2]),
            total=float(r[3]),
            total_ss=float(r[4]),
            cnt=float(r[5]),
            cnt_ss=float(r[6]),
            total_cnt=float(r[7]),
            binary_single=bool(r[8]),
        )
        for r in rows
    ]


def latency_buckets(
    session: Session,
    experiment_id: int,
    phase_id: int,
    bins: LatencyBins,
    *,
    include_multi: bool,
) -> dict[int, dict[int, int]]:
    """``{variant_id: {bucket: count}}`` of successful requests' latency (ms) in ``bins``."""
    sql = f"""
    WITH multi AS MATERIALIZED (
        SELECT unit_id FROM requests
        WHERE experiment_id = :e AND phase_id <= :p AND assigned_variant_id IS NOT NULL
        GROUP BY unit_id HAVING count(DISTINCT assigned_variant_id) > 1
    )
    SELECT r.assigned_variant_id, {bins.sql("r.latency_ms")} AS b, count(*)
    FROM requests r
    WHERE r.experiment_id = :e AND r.phase_id = :p AND r.assigned_variant_id IS NOT NULL
      AND r.status = 'ok'
      AND (:include_multi OR NOT EXISTS (SELECT 1 FROM multi m WHERE m.unit_id = r.unit_id))
    GROUP BY 1, 2
    """
    out: dict[int, dict[int, int]] = {}
    params = {"e": experiment_id, "p": phase_id, "include_multi": include_multi}
    for variant_id, bucket, count in session.execute(sa.text(sql), params).all():
        out.setdefault(variant_id, {})[int(bucket)] = int(count)
    return out
