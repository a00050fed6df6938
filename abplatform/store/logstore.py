"""Bulk writes of request logs and feedback outcomes (the router's only database writes).

Inserts are idempotent: a request row is keyed by its request id (``ON CONFLICT DO
NOTHING``) and an outcome by its ``outcome_id``, so a batch retried after an
acknowledgement was lost is never counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from abplatform.store import rollups
from abplatform.store.models import Outcome, RequestLog

REQUEST_FIELDS = (
    "request_id",
    "experiment_id",
    "phase_id",
    "unit_id",
    "assigned_variant_id",
    "served_variant_id",
    "model_version",
    "latency_ms",
    "status",
    "error",
    "created_at",
)
OUTCOME_FIELDS = (
    "outcome_id",
    "experiment_id",
    "phase_id",
    "request_id",
    "unit_id",
    "metric",
    "value",
    "created_at",
)


def write_batch(
    engine: Engine, requests: Sequence[dict[str, Any]], outcomes: Sequence[dict[str, Any]]
) -> None:
    """Insert request rows, then outcome rows, and update the rollups, in one transaction.

    Args:
        requests: dicts with the keys of :data:`REQUEST_FIELDS` (``latency_ms`` in ms,
            ``created_at`` a UTC ``datetime``).
        outcomes: dicts with the keys of :data:`OUTCOME_FIELDS`.

    Rows already present (a retried batch) are skipped, in the logs and in the rollups
    (:func:`abplatform.store.rollups.apply_batch`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database refused or is unreachable; nothing
            of the batch is written, so the caller may retry it.
    """
    with engine.begin() as conn:
        new_requests: list[dict[str, Any]] = []
        if requests:
            inserted = conn.execute(
                insert(RequestLog)
                .on_conflict_do_nothing(index_elements=["request_id"])
                .returning(RequestLog.request_id),
                list(requests),
            )
            fresh = {row[0] for row in inserted}
            new_requests = [r for r in requests if r["request_id"] in fresh]
        new_outcomes: list[dict[str, Any]] = []
        if outcomes:
            inserted = conn.execute(
                insert(Outcome)
                .on_conflict_do_nothing(index_elements=["outcome_key"])
                .returning(Outcome.outcome_key),
                [
                    {
                        "outcome_key": o["outcome_id"],
                        **{k: o.get(k) for k in OUTCOME_FIELDS if k != "outcome_id"},
                    }
                    for o in outcomes
                ],
            )
            fresh = {row[0] for row in inserted}
            new_outcomes = [o for o in outcomes if o["outcome_id"] in fresh]
        rollups.apply_batch(conn, new_requests, new_outcomes)


def copy_rows(
    connection: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Bulk-load ``rows`` into ``table`` with PostgreSQL ``COPY`` on a SQLAlchemy connection.

    About ten times faster than INSERT for 10^5 rows (platform notes). Runs inside the
    caller's transaction, so a failure leaves nothing behind.
    """
    raw = connection.connection.driver_connection  # psycopg 3 connection
    cols = ", ".join(columns)
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def analyze(connection: Any) -> None:
    """Refresh planner statistics of the log tables after a bulk load."""
    connection.exec_driver_sql(
        "ANALYZE requests, outcomes, unit_totals, latency_buckets, unit_outcomes"
    )
