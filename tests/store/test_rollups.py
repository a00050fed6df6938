"""Rollups maintained by the log writer always equal a rebuild from the raw logs,
also when a batch is retried (rows already written are not counted twice)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.store import logstore, rollups
from abplatform.store.connection import Database
from tests.service.test_reports import create, request_row, simulate

TABLES = {
    "unit_totals": "experiment_id, phase_id, unit_id, variant_id, requests, errors, successes, "
    "round(latency_ms::numeric, 6), valid_requests, rejected, fallbacks",
    "latency_buckets": "experiment_id, phase_id, variant_id, bucket, count",
    "unit_outcomes": "experiment_id, phase_id, unit_id, metric, count, "
    "round(value::numeric, 6), all_binary",
}


def fallbacks_and_rejections(view) -> list:
    """Requests the treatment failed and the control served (a timeout, an error), and
    requests the backend rejected for the caller's arguments, as the router logs them."""
    rows = [
        request_row(view, f"t{i}", "treatment", status=status, served="control", fallback=True)
        for i, status in enumerate(("timeout", "error", "timeout"))
    ]
    rows += [
        request_row(
            view, f"r{i}", key, status="rejected", served=None,
            error=f"{{'backend': 'abplatform/model-v2', 'status': 422, 'error': 'width {i}'}}",
        )
        for i, key in enumerate(("control", "treatment", "treatment"))
    ]  # fmt: skip
    return rows


def snapshot(db: Database) -> dict[str, list[tuple]]:
    with db.engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT {cols} FROM {t}").all())
            for t, cols in TABLES.items()
        }


def test_incremental_rollups_equal_a_rebuild_even_with_retried_batches(
    db: Database, session: Session
) -> None:
    view = create(session, fallback_to_control=True)
    reqs, outs = simulate(view, np.random.default_rng(5), units=60)
    reqs += fallbacks_and_rejections(view)
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


def test_rejected_and_fallback_requests_fill_their_own_unit_columns(
    db: Database, session: Session
) -> None:
    view = create(session, fallback_to_control=True)
    logstore.write_batch(db.engine, fallbacks_and_rejections(view), [])
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT v.key, sum(requests), sum(valid_requests), sum(rejected), sum(errors), "
            "sum(fallbacks), sum(successes) FROM unit_totals t JOIN variants v "
            "ON v.id = t.variant_id GROUP BY v.key ORDER BY v.key"
        ).all()
    assert [tuple(r) for r in rows] == [
        ("control", 1, 0, 1, 0, 0, 0),
        ("treatment", 5, 3, 2, 3, 3, 0),
    ]
