"""Benchmark: log ingest by the router's own writer, rollups on, against a plain COPY.

Both write the same ``--rows`` request records (``--units`` distinct units, log-normal
latencies, 2% errors) into a fresh embedded PostgreSQL, in the same process:

* **COPY** (baseline): ``COPY requests FROM STDIN (FORMAT BINARY)`` of the rows in one
  transaction: no staging, no rollups, nothing the analysis could read without a scan;
* **writer**: the router's ``BatchWriter`` with its default settings and
  ``logstore.write_batch`` (COPY into a staging table, then one statement that moves the
  rows into ``requests`` and adds them to the per-unit rollups and latency histogram).
  The rows are handed to it as the router does (``log_request``, one by one) and the
  clock stops when the last one is committed.

Prints rows/s of both and the ratio. Target (issue 10): the writer ≥ 50,000 rows/s. Run::

    .venv/bin/python -m benchmarks.bench_ingest [--rows 200000] [--units 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from abplatform import service
from abplatform.core.records import RequestRecord
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.postgres import start_embedded_postgres
from abplatform.serving.ids import RequestIds
from abplatform.settings import Settings
from abplatform.store import connection, logstore
from abplatform.store.migrate import upgrade
from abplatform.store.models import RequestLog
from abplatform.store.writer import BatchWriter


def make_rows(n: int, units: int, seed: int = 1) -> list[RequestRecord]:
    """``n`` request records of one running experiment (ids filled in by the caller), with
    request ids made as the router makes them (time first, see ``serving.ids``)."""
    ids = RequestIds.from_secret("bench")
    rng = np.random.default_rng(seed)
    unit = rng.integers(0, units, n)
    latency = rng.lognormal(3.5, 0.5, n)
    error = rng.random(n) < 0.02
    t0 = datetime.now(UTC) - timedelta(hours=1)
    return [
        RequestRecord(
            request_id=ids.new(),
            experiment_id=0,
            phase_id=0,
            unit_id=f"user-{u}",
            assigned_variant_id=0,
            served_variant_id=0,
            model_version="v",
            latency_ms=float(ms),
            status="error" if e else "ok",
            error="boom" if e else None,
            created_at=t0 + timedelta(microseconds=i),
        )
        for i, (u, ms, e) in enumerate(
            zip(unit.tolist(), latency.tolist(), error.tolist(), strict=True)
        )
    ]


def bind(
    rows: list[RequestRecord], exp: int, phase: int, variants: list[int]
) -> list[RequestRecord]:
    """The rows with the experiment's real ids (units hashed to a variant by number)."""
    out = []
    for r in rows:
        v = variants[hash(r.unit_id) % len(variants)]
        out.append(RequestRecord(
            request_id=r.request_id, experiment_id=exp, phase_id=phase, unit_id=r.unit_id,
            assigned_variant_id=v, served_variant_id=v, model_version=r.model_version,
            latency_ms=r.latency_ms, status=r.status, error=r.error, created_at=r.created_at,
        ))  # fmt: skip
    return out


def reset(db: connection.Database) -> None:
    """Empty the log and rollup tables."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE requests, outcomes, unit_totals, latency_buckets, "
                             "unit_outcomes")  # fmt: skip


def time_copy(db: connection.Database, rows: list[RequestRecord]) -> float:
    """Seconds to COPY ``rows`` straight into ``requests``."""
    reset(db)
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        columns = RequestRecord.columns()
        types = logstore.copy_types(RequestLog, columns)  # binary COPY, as the writer does
        logstore.copy_rows(conn, "requests", columns, [r.as_row() for r in rows], types)
    return time.perf_counter() - t0


async def _through_writer(db: connection.Database, rows: list[RequestRecord]) -> float:
    settings = Settings()
    writer = BatchWriter(
        lambda reqs, outs: logstore.write_batch(db.engine, reqs, outs),
        batch_size=settings.log_batch_size,
        flush_interval_s=settings.log_flush_interval_ms / 1000.0,
    )
    await writer.start()
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        writer.log_request(row)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the loop run, as between router requests
    while writer.stats.requests_written < len(rows):
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - t0
    await writer.close()
    return seconds


def time_writer(db: connection.Database, rows: list[RequestRecord]) -> float:
    """Seconds for the router's writer to commit ``rows`` with their rollups."""
    reset(db)
    return asyncio.run(_through_writer(db, rows))


def main() -> None:
    """Make the data, time both ways ``--repeat`` times, print the medians and the ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="abplatform-bench-ingest-", dir="/tmp"))
    try:
        url = start_embedded_postgres(home)
        upgrade(url)
        db = connection.make_database(url)
        variants = [
            VariantSpec(
                key="control",
                model_version="v1",
                backend_app_id="abplatform/model-v1",
                is_control=True,
            ),
            VariantSpec(key="treatment", model_version="v2", backend_app_id="abplatform/model-v2"),
        ]
        with db.sessions() as s:
            service.create_experiment(
                s, ExperimentSpec(name="ingest", variants=variants), actor="b"
            )
            view = service.start_experiment(s, "ingest", actor="bench")
        rows = bind(make_rows(args.rows, args.units), view.id, view.current_phase.id,
                    [v.id for v in view.variants])  # fmt: skip
        copies, writes = [], []
        for _ in range(args.repeat):
            copies.append(time_copy(db, rows))
            writes.append(time_writer(db, rows))
        c, w = statistics.median(copies), statistics.median(writes)
        print(f"{args.rows} rows, {args.units} units; median of {args.repeat}")
        print(
            f"COPY into requests (baseline): {args.rows / c:10,.0f} rows/s  ({c:.2f} s; "
            f"{' '.join(f'{x:.2f}' for x in copies)})"
        )
        print(
            f"router writer + rollups:       {args.rows / w:10,.0f} rows/s  ({w:.2f} s; "
            f"{' '.join(f'{x:.2f}' for x in writes)})"
        )
        print(f"writer / COPY: {c / w:.2f} of COPY's rate  (target: writer >= 50,000 rows/s)")
        db.dispose()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
