"""Benchmark: the stats report on N logged requests (default 10 million) in PostgreSQL.

Baseline, in the same process on the same data: load the raw request rows into pandas
(``pd.read_sql``) and compute the same per-unit aggregates and percentiles there. Prints
seconds and the ratio. Target: the report under 3 s for 10M requests on 2 cores.

The data lives in an embedded PostgreSQL under ``/tmp/abplatform-bench`` (made on first use,
reused after: generating 10M rows takes a few minutes). Run::

    .venv/bin/python -m benchmarks.bench_report [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress

from abplatform import service
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.postgres import start_embedded_postgres
from abplatform.service.reports import build_report
from abplatform.store import connection as database
from abplatform.store import rollups
from abplatform.store.migrate import upgrade

HOME = Path("/tmp/abplatform-bench")
CHUNK = 1_000_000
console = Console()


def ensure_data(db: database.Database, rows: int) -> str:
    """Create experiment ``bench-<rows>`` with ``rows`` requests (10 per unit on average)
    and one thumbs-up outcome per 10 requests, generated server-side; return its name."""
    name = f"bench-{rows}"
    with db.sessions() as s:
        try:
            view = service.get_experiment(s, name)
            if sum(service.request_counts(s, name).values()) == rows:
                return name
            raise SystemExit(f"{name} exists with a different row count; rm -r {HOME}")
        except service.NotFoundError:
            pass
        spec = ExperimentSpec(
            name=name,
            variants=[
                VariantSpec(
                    key="control", model_version="v1",
                    backend_app_id="abplatform/model-v1", is_control=True,
                ),
                VariantSpec(key="treatment", model_version="v2",
                            backend_app_id="abplatform/model-v2"),
            ],
            primary_metric="thumbs_up",
            guardrails=["error_rate", "latency_p95"],
        )  # fmt: skip
        service.create_experiment(s, spec, actor="bench")
        view = service.start_experiment(s, name, actor="bench")
    ids = {v.key: v.id for v in view.variants}
    params = {
        "e": view.id, "p": view.current_phase.id, "c": ids["control"], "t": ids["treatment"],
        "units": max(rows // 10, 1),
    }  # fmt: skip
    insert_requests = sa.text("""
        INSERT INTO requests (request_id, experiment_id, phase_id, unit_id, assigned_variant_id,
                              served_variant_id, model_version, latency_ms, status, created_at)
        SELECT md5(:e || '-' || i), :e, :p, 'u' || (i % :units),
               CASE WHEN hashtext('u' || (i % :units)) & 1 = 0 THEN :c ELSE :t END,
               CASE WHEN hashtext('u' || (i % :units)) & 1 = 0 THEN :c ELSE :t END,
               CASE WHEN hashtext('u' || (i % :units)) & 1 = 0 THEN 'v1' ELSE 'v2' END,
               exp(3.5 + 0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
                   + CASE WHEN hashtext('u' || (i % :units)) & 1 = 0 THEN 0 ELSE 0.05 END),
               CASE WHEN random() < 0.02 THEN 'error' ELSE 'ok' END,
               now() - (i % 86400) * interval '1 second'
        FROM generate_series(:lo, :hi) AS i
    """)
    insert_outcomes = sa.text("""
        INSERT INTO outcomes (outcome_key, experiment_id, request_id, unit_id, metric, value)
        SELECT 'o' || :e || '-' || i, :e, md5(:e || '-' || i), 'u' || (i % :units), 'thumbs_up',
               (random() < CASE WHEN hashtext('u' || (i % :units)) & 1 = 0
                                THEN 0.50 ELSE 0.52 END)::int
        FROM generate_series(:lo, :hi) AS i WHERE i % 10 = 0
    """)
    with Progress(console=console) as progress:
        task = progress.add_task(f"generating {rows:,} requests", total=rows)
        for lo in range(1, rows + 1, CHUNK):
            hi = min(lo + CHUNK - 1, rows)
            with db.engine.begin() as conn:
                conn.execute(insert_requests, {**params, "lo": lo, "hi": hi})
                conn.execute(insert_outcomes, {**params, "lo": lo, "hi": hi})
            progress.update(task, completed=hi)
    with console.status("building rollups, as the log writer does live"), db.engine.begin() as c:
        rollups.rebuild(c, view.id)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("requests", "outcomes", "unit_totals", "latency_buckets", "unit_outcomes"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    return name


def pandas_baseline(db: database.Database, name: str) -> dict[str, float]:
    """The same figures computed from raw rows loaded into pandas."""
    with db.sessions() as s:
        view = service.get_experiment(s, name)
    frame = pd.read_sql(
        sa.text(
            "SELECT unit_id, assigned_variant_id, status, latency_ms FROM requests "
            "WHERE experiment_id = :e AND phase_id = :p"
        ),
        db.engine,
        params={"e": view.id, "p": view.current_phase.id},
    )
    frame["err"] = (frame.status != "ok").astype(float)
    frame["ok"] = 1.0 - frame["err"]
    frame["lat"] = frame.latency_ms * frame.ok
    units = frame.groupby(["unit_id", "assigned_variant_id"]).agg(
        reqs=("err", "size"), errs=("err", "sum"), ok=("ok", "sum"), lat=("lat", "sum")
    )
    per_variant = units.groupby(level=1).agg(["sum", "count"])
    oks = frame[frame.ok == 1.0]
    q = oks.groupby("assigned_variant_id").latency_ms.quantile([0.5, 0.95, 0.99])
    return {"variants": float(len(per_variant)), "p95": float(q.iloc[1])}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Median seconds over ``repeat`` runs, and all runs."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), runs


def _r(runs: list[float]) -> list[float]:
    return np.round(runs, 2).tolist()


def open_data(rows: int) -> tuple[database.Database, str]:
    """The benchmark database under :data:`HOME` (embedded PostgreSQL, migrated) and the
    name of its experiment with ``rows`` logged requests (made on first use)."""
    HOME.mkdir(parents=True, exist_ok=True)
    db = database.make_database(start_embedded_postgres(HOME))
    upgrade(db.url)
    return db, ensure_data(db, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    db, name = open_data(args.rows)

    def report() -> object:
        with db.sessions() as s:
            return build_report(s, name)

    report()  # warm the cache once, as a dashboard that refreshes would
    report_s, report_runs = timed(report, args.repeat)
    base_s, base_runs = timed(lambda: pandas_baseline(db, name), 1)
    console.print(f"rows: {args.rows:,} requests")
    console.print(f"report (SQL sufficient statistics) {report_s:7.2f} s  runs {_r(report_runs)}")
    console.print(f"pandas on raw rows (baseline)      {base_s:7.2f} s  runs {_r(base_runs)}")
    console.print(f"ratio baseline / report            {base_s / report_s:7.1f}x")
    console.print(f"target: report < 3 s → {'met' if report_s < 3 else 'NOT met'}")
    db.dispose()


if __name__ == "__main__":
    main()
