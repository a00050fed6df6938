"""The store agrees with the core's definitions: record fields are log table columns, the
rollup tables hold the catalogue's unit columns, and the SQL latency bucket equals the
numpy one."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from abplatform.core.metrics import BINS, FEEDBACK_COLUMNS, REQUEST_COLUMNS
from abplatform.core.records import OutcomeRecord, RequestRecord
from abplatform.store.connection import Database
from abplatform.store.models import Outcome, RequestLog, UnitOutcome, UnitTotal
from abplatform.store.rollups import latency_bucket_sql


def test_every_record_field_is_a_column_of_its_log_table() -> None:
    assert set(RequestRecord.columns()) == set(RequestLog.__table__.columns.keys())
    assert set(OutcomeRecord.columns()) == set(Outcome.__table__.columns.keys()) - {"id"}


def test_the_rollup_tables_hold_exactly_the_catalogue_unit_columns() -> None:
    keys = {"experiment_id", "phase_id", "unit_id", "variant_id", "metric", "all_binary"}
    assert set(UnitTotal.__table__.columns.keys()) - keys == set(REQUEST_COLUMNS)
    assert set(UnitOutcome.__table__.columns.keys()) - keys == set(FEEDBACK_COLUMNS)


def test_the_sql_latency_bucket_is_the_numpy_bucket(db: Database) -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([[0.0, 0.05, 0.1, 0.0999, 1e6, 2e6, 999_999.9], rng.lognormal(4, 2, 2000)])
    with db.engine.connect() as conn:
        got = (
            conn.execute(
                sa.text(f"SELECT {latency_bucket_sql('v')} FROM unnest(CAST(:x AS float8[])) AS v"),
                {"x": x.tolist()},
            )
            .scalars()
            .all()
        )
    assert np.array_equal(np.array(got), BINS.bucket(x))
