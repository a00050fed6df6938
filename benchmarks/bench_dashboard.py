"""Benchmark: the dashboard's experiment page with 1 million logged requests.

Not a timed test: run ``.venv/bin/python -m benchmarks.bench_dashboard`` (``--rows`` to
change the size). It starts an embedded PostgreSQL in a temporary folder under /tmp,
creates a running experiment (control vs treatment, 50/50, primary metric
``thumbs_up``), loads ``--rows`` request rows and feedback for about 30% of them with
psycopg ``COPY`` (then rebuilds the rollups, as a bulk load must), and then times, in
this one process:

* the stats report alone (:func:`abplatform.service.reports.build_report`), the baseline;
* rendering the whole experiment page with Streamlit's ``AppTest`` (report, cumulative
  lift with its confidence sequence, latency histogram, charts, tables) with the
  dashboard's result store emptied first, so every run computes everything ("cold");
* the same with the cumulative lift of ``error_rate``, which reads the request log (the
  rollups have no time dimension);
* the same page served from the result store ("stored": a self-refresh or a widget
  interaction while no new data arrived).

It prints seconds (median of ``--repeat`` runs) and the ratios to the report. Target:
the cold page renders within 2 s at 1 million requests.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from abplatform import service
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.postgres import start_embedded_postgres
from abplatform.service.reports import build_report
from abplatform.store import connection as database
from abplatform.store import rollups
from abplatform.store.migrate import upgrade

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
NAME = "bench-img"
TARGET_S = 2.0


def start_database() -> database.Database:
    """A fresh, migrated database on an embedded PostgreSQL under /tmp."""
    home = Path(tempfile.mkdtemp(prefix="abplatform-bench-", dir="/tmp"))
    server_url = start_embedded_postgres(home)
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE bench")
    admin.dispose()
    url = sa.engine.make_url(server_url).set(database="bench")
    db = database.make_database(url.render_as_string(hide_password=False))
    upgrade(db.url)
    return db


def create_experiment(db: database.Database, span: timedelta) -> service.ExperimentView:
    """A running 50/50 experiment whose phase started ``span`` ago."""
    variants = [
        VariantSpec(
            key="control", model_version="v1", backend_app_id="abplatform/model-v1", is_control=True
        ),
        VariantSpec(key="treatment", model_version="v2", backend_app_id="abplatform/model-v2"),
    ]
    spec = ExperimentSpec(
        name=NAME, variants=variants, weights=[50, 50], primary_metric="thumbs_up"
    )
    with db.sessions() as s:
        service.create_experiment(s, spec, actor="bench")
        view = service.start_experiment(s, NAME, actor="bench")
    start = datetime.now(UTC) - span
    with db.engine.begin() as conn:  # back-date the phase so the traffic falls inside it
        conn.execute(
            sa.text("UPDATE phases SET started_at = :t WHERE id = :p"),
            {"t": start, "p": view.current_phase.id},
        )
    with db.sessions() as s:
        return service.get_experiment(s, NAME)


def _copy(db: database.Database, table: str, columns: str, lines: io.StringIO) -> None:
    raw = db.engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            copy.write(lines.getvalue())
        raw.commit()
    finally:
        raw.close()


def load_rows(
    db: database.Database, view: service.ExperimentView, rows: int, *, seed: int = 1
) -> tuple[int, int]:
    """COPY ``rows`` requests (Zipf-skewed users, 2% vs 1.6% errors, log-normal latency
    with medians 800 vs 720 ms) and thumbs-up feedback for ~30% of them (52% vs 55%
    positive). Returns (requests, outcomes)."""
    rng = np.random.default_rng(seed)
    units = max(rows // 10, 2)
    unit = np.minimum(rng.zipf(1.3, rows), units) - 1
    unit = (unit * 2654435761) % units  # spread heavy users over both arms
    arm = unit % 2
    control, treatment = view.variants[0], view.variants[1]
    variant_ids = np.where(arm == 0, control.id, treatment.id)
    err = rng.random(rows) < np.where(arm == 0, 0.020, 0.016)
    latency = rng.lognormal(np.log(np.where(arm == 0, 800.0, 720.0)), 0.35)
    phase = view.current_phase
    span = (datetime.now(UTC) - phase.started_at).total_seconds()
    t0 = phase.started_at.timestamp()
    created = t0 + np.sort(rng.random(rows)) * span * 0.999
    stamps = [
        datetime.fromtimestamp(t, UTC).isoformat()
        for t in np.linspace(created[0], created[-1], 4097)
    ]
    stamp_idx = np.searchsorted(np.linspace(created[0], created[-1], 4097), created)
    stamp_idx = np.minimum(stamp_idx, 4096)
    buf = io.StringIO()
    for i in range(rows):
        vid = variant_ids[i]
        ok = not err[i]
        buf.write(
            f"r{i:09d}\t{view.id}\t{phase.id}\tu{unit[i]}\t{vid}\t"
            f"{vid if ok else chr(92) + 'N'}\t{'v1' if arm[i] == 0 else 'v2'}\t"
            f"{latency[i]:.3f}\t{'ok' if ok else 'error'}\t"
            f"{chr(92) + 'N' if ok else 'backend failed'}\t{stamps[stamp_idx[i]]}\n"
        )
    _copy(
        db,
        "requests",
        "request_id, experiment_id, phase_id, unit_id, assigned_variant_id, "
        "served_variant_id, model_version, latency_ms, status, error, created_at",
        buf,
    )
    fb = np.flatnonzero((rng.random(rows) < 0.30) & ~err)
    positive = rng.random(fb.size) < np.where(arm[fb] == 0, 0.52, 0.55)
    out = io.StringIO()
    for j, i in enumerate(fb):
        out.write(
            f"o{i:09d}\t{view.id}\t{phase.id}\tr{i:09d}\tu{unit[i]}\tthumbs_up\t"
            f"{1 if positive[j] else 0}\t{stamps[min(stamp_idx[i] + 1, 4096)]}\n"
        )
    columns = "outcome_key, experiment_id, phase_id, request_id, unit_id, metric, value, created_at"
    _copy(db, "outcomes", columns, out)
    with db.engine.begin() as conn:  # a bulk load: rebuild the rollups the reports read
        rollups.rebuild(conn, view.id)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("requests", "outcomes", "unit_totals", "unit_outcomes", "latency_buckets"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    return rows, int(fb.size)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Median and all wall-clock seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def _rounded(xs: list[float]) -> list[float]:
    return [round(x, 2) for x in xs]


def render_page(url: str, *, cold: bool, chart_metric: str | None = None) -> Callable[[], object]:
    """A function that renders the experiment page once with AppTest.

    ``cold``: the dashboard's result store is emptied first, so the report, the
    cumulative lift and the histogram are all computed; otherwise they come from the store
    (a refresh or a widget interaction while no new data arrived). ``chart_metric``: the
    metric of the cumulative-lift chart (default the primary, ``thumbs_up``).
    """
    from streamlit.testing.v1 import AppTest

    from dashboard import context

    os.environ["DATABASE_URL"] = url

    def run() -> object:
        if cold:
            context.store.clear()  # a new, empty ResultStore on the next call
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.query_params.update({"page": "experiment", "experiment": NAME})
        if chart_metric:
            at.session_state["an_metric"] = chart_metric
        at.run()
        if at.exception:
            raise RuntimeError(f"the page raised: {at.exception[0].value}")
        if len(at.get("vega_lite_chart")) != 3:
            raise RuntimeError("the page did not draw its three charts")
        return at

    return run


def main() -> None:
    """Load the data, time report and page, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="request rows to load")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    args = parser.parse_args()

    t = time.perf_counter()
    db = start_database()
    view = create_experiment(db, timedelta(hours=6))
    requests, outcomes = load_rows(db, view, args.rows)
    print(
        f"loaded {requests:,} requests and {outcomes:,} outcomes in {time.perf_counter() - t:.1f} s"
    )

    def report() -> object:
        with db.sessions() as s:
            return build_report(s, NAME)

    report()  # warm the connection pool and imports
    first_t = time.perf_counter()
    render_page(db.url, cold=True)()  # imports, database connection, migration check
    first = time.perf_counter() - first_t
    report_s, report_all = timed(report, args.repeat)
    cold_s, cold_all = timed(render_page(db.url, cold=True), args.repeat)
    warm_s, warm_all = timed(render_page(db.url, cold=False), args.repeat)
    errors_s, errors_all = timed(
        render_page(db.url, cold=True, chart_metric="error_rate"), args.repeat
    )
    print(f"report alone (baseline)             {report_s:6.2f} s  runs {_rounded(report_all)}")
    print(f"experiment page, computed (cold)    {cold_s:6.2f} s  runs {_rounded(cold_all)}")
    print(f"  same, lift chart of error_rate      {errors_s:6.2f} s  runs {_rounded(errors_all)}")
    print(f"experiment page, from the store     {warm_s:6.2f} s  runs {_rounded(warm_all)}")
    print(f"first render in a fresh process     {first:6.2f} s")
    print(f"ratio cold page / report            {cold_s / report_s:6.2f}")
    print(f"ratio stored page / report          {warm_s / report_s:6.2f}")
    verdict = "within" if max(cold_s, errors_s) <= TARGET_S else "OVER"
    print(f"target {TARGET_S:.1f} s (cold page) at {requests:,} requests: {verdict}")
    db.dispose()


if __name__ == "__main__":
    main()
