"""Alembic migrations on a real PostgreSQL: up, down, up again, and in step with the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from abplatform.store import migrate as database
from abplatform.store.models import Base

TABLES = {
    "experiments", "variants", "phases", "requests", "outcomes", "audit_log",
    "unit_totals", "latency_buckets", "unit_outcomes", "rollouts", "controller_leases",
    "routes", "call_totals", "call_latency_buckets",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(db_url: str) -> None:
    assert _tables(db_url) == TABLES
    database.downgrade(db_url, "base")
    assert _tables(db_url) == set()
    database.upgrade(db_url)
    assert _tables(db_url) == TABLES


def test_migrated_schema_matches_the_orm_models(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_timestamps_are_timestamptz(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type LIKE 'timestamp%%'"
        ).all()
    engine.dispose()
    assert rows, "expected timestamp columns"
    assert {r.data_type for r in rows} == {"timestamp with time zone"}


def test_upgrade_is_idempotent(db_url: str) -> None:
    database.upgrade(db_url)
    database.upgrade(db_url)
    assert _tables(db_url) == TABLES


def test_upgrading_to_the_rollups_backfills_them_from_existing_logs(db_url: str) -> None:
    import numpy as np

    from abplatform.store import logstore, rollups
    from abplatform.store.connection import make_database
    from tests.service.test_reports import create, simulate
    from tests.store.test_rollups import snapshot

    db = make_database(db_url)
    with db.sessions() as session:
        view = create(session)
    reqs, outs = simulate(view, np.random.default_rng(6), units=40)
    logstore.write_batch(db.engine, reqs, outs)
    with db.engine.begin() as conn:
        rollups.rebuild(conn, view.id)
    expected = snapshot(db)
    database.downgrade(db_url, "0002")  # logs kept, rollups dropped
    database.upgrade(db_url)
    assert snapshot(db) == expected
    db.dispose()


def test_upgrading_to_0005_reclassifies_old_fallbacks_and_rejections(db_url: str) -> None:
    from abplatform.store import logstore
    from abplatform.store.connection import make_database
    from tests.service.test_reports import create, request_row
    from tests.store.test_rollups import fallbacks_and_rejections, snapshot

    db = make_database(db_url)
    with db.sessions() as session:
        view = create(session, fallback_to_control=True)
    rows = [request_row(view, f"u{i}", ("control", "treatment")[i % 2]) for i in range(10)]
    rows += fallbacks_and_rejections(view)
    logstore.write_batch(db.engine, rows, [])
    expected = snapshot(db)
    database.downgrade(db_url, "0004")  # the old meaning: fallbacks 'ok', rejections 'error'
    with db.engine.connect() as conn:
        old = dict(conn.exec_driver_sql("SELECT status, count(*) FROM requests GROUP BY 1").all())
    assert old == {"ok": 13, "error": 3}
    database.upgrade(db_url)
    with db.engine.connect() as conn:
        new = conn.exec_driver_sql(
            "SELECT status, fallback, count(*) FROM requests GROUP BY 1, 2 ORDER BY 1, 2"
        ).all()
    # A fallback's old log did not say error or timeout: both come back as 'error'.
    assert [tuple(r) for r in new] == [
        ("error", True, 3),
        ("ok", False, 10),
        ("rejected", False, 3),
    ]
    assert snapshot(db) == expected
    db.dispose()
