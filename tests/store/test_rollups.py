"""Rollups maintained by the log writer always equal a rebuild from the raw logs,
also when a batch is retried (rows already written are not counted twice)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.store import logstore, rollups
from abplatform.store.connection import Database
from tests.service.test_reports import create, simulate

TABLES = {
    "unit_totals": "experiment_id, phase_id, unit_id, variant_id, requests, errors, successes, "
    "round(latency_ms::numeric, 6)",
    "latency_buckets": "experiment_id, phase_id, variant_id, bucket, count",
    "unit_outcomes": "experiment_id, phase_id, unit_id, metric, count, "
    "round(value::numeric, 6), all_binary",
}


def snapshot(db: Database) -> dict[str, list[tuple]]:
    with db.engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT {cols} FROM {t}").all())
            for t, cols in TABLES.items()
        }


def test_incremental_rollups_equal_a_rebuild_even_with_retried_batches(
    db: Database, session: Session
) -> None:
    view = create(session)
    reqs, outs = simulate(view, np.random.default_rng(5), units=60)
    half = len(reqs) // 2
    logstore.write_batch(db.engine, reqs[:half], outs[: len(outs) // 2])
    logstore.write_batch(db.engine, reqs, outs)  # a retry that overlaps the first batch
    incremental = snapshot(db)
    with db.engine.begin() as conn:
        rollups.rebuild(conn, view.id)
    assert snapshot(db) == incremental
    total = sum(row[4] for row in incremental["unit_totals"])
    assert total == len(reqs)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM requests")).scalar() == len(reqs)
