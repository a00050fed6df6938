"""Bulk writes of request and outcome records (the router's only database writes).

A batch is copied (``COPY``) into a per-connection staging table and moved into the log
table by one statement that also adds the rows it inserted to the rollups
(:mod:`abplatform.store.rollups`): a data-modifying CTE ``INSERT ... ON CONFLICT DO
NOTHING RETURNING *`` feeds the rollup upserts, so a row is counted exactly once even when
a batch is retried after a lost acknowledgement (request rows are keyed by
``request_id``, outcome rows by ``outcome_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from abplatform.core.records import OutcomeRecord, RequestRecord
from abplatform.store import rollups

_REQUEST_COLUMNS = ", ".join(RequestRecord.columns())
_OUTCOME_COLUMNS = ", ".join(OutcomeRecord.columns())

_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS staging_requests ON COMMIT DELETE ROWS AS "
    f"SELECT {_REQUEST_COLUMNS} FROM requests WITH NO DATA",
    f"CREATE TEMP TABLE IF NOT EXISTS staging_outcomes ON COMMIT DELETE ROWS AS "
    f"SELECT {_OUTCOME_COLUMNS} FROM outcomes WITH NO DATA",
)

_KNOWN_PHASE = (
    "(EXISTS (SELECT 1 FROM phases p WHERE p.id = s.phase_id "
    "AND p.experiment_id = s.experiment_id) "
    "OR (s.experiment_id IS NULL AND s.phase_id IS NULL AND s.route_id IS NOT NULL))"
)

MOVE_REQUESTS = f"""
WITH ins AS (
    INSERT INTO requests ({_REQUEST_COLUMNS})
    SELECT {_REQUEST_COLUMNS} FROM staging_requests s WHERE {_KNOWN_PHASE}
    ON CONFLICT (request_id) DO NOTHING
    RETURNING *
),
totals AS ({rollups.upsert_unit_totals("ins")}),
buckets AS ({rollups.upsert_latency_buckets("ins")}),
call_totals AS ({rollups.upsert_call_totals("ins")}),
call_buckets AS ({rollups.upsert_call_buckets("ins")})
SELECT (SELECT count(*) FROM ins),
       (SELECT count(*) FROM staging_requests s WHERE NOT {_KNOWN_PHASE})
"""
"""Staged request rows into ``requests``; the inserted ones into the rollups. Rows whose
(experiment, phase) does not exist are refused (counted in the second column): the log
table has no per-row foreign key checks, this one set-wise check stands in for them. A
route's request outside any experiment has neither (and a route)."""

_RESOLVED = ", ".join(
    {
        "experiment_id": "coalesce(s.experiment_id, r.experiment_id) AS experiment_id",
        "phase_id": "CASE WHEN s.experiment_id IS NULL THEN r.phase_id ELSE s.phase_id END"
        " AS phase_id",
        "unit_id": "coalesce(s.unit_id, r.unit_id) AS unit_id",
    }.get(c, f"s.{c}")
    for c in OutcomeRecord.columns()
)

MOVE_OUTCOMES = f"""
WITH src AS (
    SELECT {_RESOLVED}, r.request_id IS NOT NULL AS request_logged FROM staging_outcomes s
    LEFT JOIN requests r ON s.experiment_id IS NULL AND r.request_id = s.request_id
),
ins AS (
    INSERT INTO outcomes ({_OUTCOME_COLUMNS})
    SELECT {_OUTCOME_COLUMNS} FROM src WHERE experiment_id IS NOT NULL
    ON CONFLICT (outcome_key) DO NOTHING
    RETURNING *
),
totals AS ({rollups.upsert_unit_outcomes("ins")})
SELECT (SELECT count(*) FROM ins),
       (SELECT coalesce(array_agg(outcome_key), '{{}}') FROM src
        WHERE experiment_id IS NULL AND NOT request_logged),
       (SELECT count(*) FROM src WHERE experiment_id IS NULL AND request_logged)
"""
"""Staged outcome rows into ``outcomes``; the inserted ones into the rollups. Outcomes
without an experiment (feedback on a request another router runner served) take the
experiment, phase and unit of their request's row; those whose request row is not there
yet are left out and returned (second column) for a later retry; those whose request
was served outside any experiment (a route's rule sent it to an app) are refused
(counted in the third column): there is nothing to analyse them in."""


class BatchResult(NamedTuple):
    """What one write did: new request rows, new outcome rows, the keys of outcomes not
    written because their request row does not exist (yet), request rows refused because
    their experiment phase does not exist, and outcomes refused because their request
    was served outside any experiment."""

    requests: int
    outcomes: int
    unresolved: tuple[str, ...] = ()
    refused: int = 0
    refused_outcomes: int = 0


def copy_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
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


def write_records(
    conn: Connection,
    requests: Sequence[RequestRecord],
    outcomes: Sequence[OutcomeRecord],
) -> BatchResult:
    """Insert request and outcome records and add the new ones to the rollups, in the
    caller's transaction. Returns how many of each were new (not already logged), and the
    outcomes left for later (see :data:`MOVE_OUTCOMES`)."""
    for sql in _STAGING:
        conn.exec_driver_sql(sql)
    new_requests = new_outcomes = refused_requests = refused_outcomes = 0
    unresolved: tuple[str, ...] = ()
    if requests:
        copy_rows(conn, "staging_requests", RequestRecord.columns(), [r.as_row() for r in requests])
        inserted, refused = conn.exec_driver_sql(MOVE_REQUESTS).one()
        new_requests, refused_requests = int(inserted), int(refused)
        conn.exec_driver_sql("DELETE FROM staging_requests")
    if outcomes:
        copy_rows(conn, "staging_outcomes", OutcomeRecord.columns(), [o.as_row() for o in outcomes])
        count, keys, orphans = conn.exec_driver_sql(MOVE_OUTCOMES).one()
        new_outcomes, unresolved, refused_outcomes = int(count), tuple(keys), int(orphans)
        conn.exec_driver_sql("DELETE FROM staging_outcomes")
    return BatchResult(new_requests, new_outcomes, unresolved, refused_requests, refused_outcomes)


def write_batch(
    engine: Engine, requests: Sequence[RequestRecord], outcomes: Sequence[OutcomeRecord]
) -> BatchResult:
    """Write one batch in its own transaction (see :func:`write_records`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database refused or is unreachable; nothing
            of the batch is written, so the caller may retry it.
    """
    with engine.begin() as conn:
        return write_records(conn, requests, outcomes)


def analyze(connection: Connection) -> None:
    """Refresh planner statistics of the log tables after a bulk load."""
    connection.exec_driver_sql(
        "ANALYZE requests, outcomes, unit_totals, latency_buckets, unit_outcomes, call_totals, "
        "call_latency_buckets"
    )


__all__ = [
    "MOVE_OUTCOMES",
    "MOVE_REQUESTS",
    "BatchResult",
    "analyze",
    "copy_rows",
    "write_batch",
    "write_records",
]
