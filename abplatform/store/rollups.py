"""Incremental rollups of the request and outcome logs, so reports never scan raw requests.

Three tables (see :mod:`abplatform.store.models`): ``unit_totals`` (one row per unit, phase and
assigned variant), ``latency_buckets`` (a latency histogram per phase and variant) and
``unit_outcomes`` (one row per unit, phase and feedback metric). The log writer updates
them with additive upserts in the same transaction as the rows it inserts
(:func:`apply_batch`), so the rollups always equal a ``GROUP BY`` over the logs; bulk loads
(imports, backfills) call :func:`rebuild` instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert

from abplatform.core.stats import LatencyBins
from abplatform.store.models import LatencyBucket, UnitOutcome, UnitTotal

BINS = LatencyBins()


def latency_bucket(latency_ms: float) -> int:
    """The :data:`BINS` bucket of one latency (ms), same as the SQL expression."""
    return int(BINS.bucket([latency_ms])[0])


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    if not rows:
        return
    rows.sort(key=lambda r: tuple(r[k] for k in keys))  # a fixed lock order: no deadlocks
    stmt = insert(table)
    additive = {
        c.name: getattr(table, c.name) + stmt.excluded[c.name]
        for c in table.__table__.columns
        if c.name not in keys and c.name != "all_binary"
    }
    if "all_binary" in table.__table__.columns:
        additive["all_binary"] = table.all_binary & stmt.excluded.all_binary
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=additive), rows)


def apply_batch(
    conn: Connection, requests: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]]
) -> None:
    """Add newly inserted request rows and outcome rows to the rollups.

    Pass only rows that were actually inserted (not conflicting duplicates), so that a
    retried batch is not counted twice. Requests without an assigned variant (units
    outside coverage) and outcomes without a phase are not rolled up.
    """
    units: dict[tuple, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    hist: dict[tuple, int] = defaultdict(int)
    for r in requests:
        if r["assigned_variant_id"] is None:
            continue
        key = (r["experiment_id"], r["phase_id"], r["unit_id"], r["assigned_variant_id"])
        acc = units[key]
        ok = r["status"] == "ok"
        acc[0] += 1
        acc[1] += 0 if ok else 1
        acc[2] += 1 if ok else 0
        acc[3] += r["latency_ms"] if ok else 0.0
        if ok:
            b = (r["experiment_id"], r["phase_id"], r["assigned_variant_id"])
            hist[(*b, latency_bucket(r["latency_ms"]))] += 1
    outs: dict[tuple, list[Any]] = defaultdict(lambda: [0, 0.0, True])
    for o in outcomes:
        if o.get("phase_id") is None:
            continue
        acc = outs[(o["experiment_id"], o["phase_id"], o["unit_id"], o["metric"])]
        acc[0] += 1
        acc[1] += o["value"]
        acc[2] = acc[2] and o["value"] in (0.0, 1.0) and math.isfinite(o["value"])
    unit_keys = ("experiment_id", "phase_id", "unit_id", "variant_id")
    _upsert(
        conn,
        UnitTotal,
        [dict(zip(unit_keys, k, strict=True), reqs=v[0], errs=v[1], oks=v[2], lat_sum=v[3])
         for k, v in units.items()],
        unit_keys,
    )  # fmt: skip
    hist_keys = ("experiment_id", "phase_id", "variant_id", "bucket")
    _upsert(
        conn,
        LatencyBucket,
        [dict(zip(hist_keys, k, strict=True), count=v) for k, v in hist.items()],
        hist_keys,
    )
    out_keys = ("experiment_id", "phase_id", "unit_id", "metric")
    _upsert(
        conn,
        UnitOutcome,
        [dict(zip(out_keys, k, strict=True), cnt=v[0], total=v[1], all_binary=v[2])
         for k, v in outs.items()],
        out_keys,
    )  # fmt: skip


REBUILD_SQL = (
    "DELETE FROM unit_totals WHERE experiment_id = :e",
    "DELETE FROM latency_buckets WHERE experiment_id = :e",
    "DELETE FROM unit_outcomes WHERE experiment_id = :e",
    """INSERT INTO unit_totals (experiment_id, phase_id, unit_id, variant_id, reqs, errs, oks,
                                lat_sum)
       SELECT experiment_id, phase_id, unit_id, assigned_variant_id, count(*),
              count(*) FILTER (WHERE status <> 'ok'), count(*) FILTER (WHERE status = 'ok'),
              coalesce(sum(latency_ms) FILTER (WHERE status = 'ok'), 0)
       FROM requests WHERE experiment_id = :e AND assigned_variant_id IS NOT NULL
       GROUP BY experiment_id, phase_id, unit_id, assigned_variant_id""",
    f"""INSERT INTO latency_buckets (experiment_id, phase_id, variant_id, bucket, count)
       SELECT experiment_id, phase_id, assigned_variant_id, {BINS.sql("latency_ms")}, count(*)
       FROM requests
       WHERE experiment_id = :e AND assigned_variant_id IS NOT NULL AND status = 'ok'
       GROUP BY 1, 2, 3, 4""",
    """UPDATE outcomes o SET phase_id = r.phase_id FROM requests r
       WHERE o.experiment_id = :e AND o.phase_id IS NULL AND r.request_id = o.request_id""",
    """UPDATE outcomes o SET phase_id = p.id FROM phases p
       WHERE o.experiment_id = :e AND o.phase_id IS NULL AND p.experiment_id = o.experiment_id
         AND o.created_at >= p.started_at AND o.created_at < coalesce(p.ended_at, 'infinity')""",
    """INSERT INTO unit_outcomes (experiment_id, phase_id, unit_id, metric, cnt, total,
                                  all_binary)
       SELECT experiment_id, phase_id, unit_id, metric, count(*), sum(value),
              bool_and(value IN (0, 1))
       FROM outcomes WHERE experiment_id = :e AND phase_id IS NOT NULL
       GROUP BY experiment_id, phase_id, unit_id, metric""",
)


def rebuild(conn: Connection, experiment_id: int) -> None:
    """Recompute every rollup of one experiment from its logs (after a bulk load)."""
    for sql in REBUILD_SQL:
        conn.exec_driver_sql(sql.replace(":e", "%(e)s"), {"e": experiment_id})
