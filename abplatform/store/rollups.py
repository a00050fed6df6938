"""Rollups of the request and outcome logs, so reports never scan raw requests.

Three tables (see :mod:`abplatform.store.models`): ``unit_totals`` (per unit, phase and
assigned variant: the sums of :data:`abplatform.core.metrics.REQUEST_COLUMNS`),
``latency_buckets`` (a latency histogram per phase and variant) and ``unit_outcomes``
(per unit, phase and feedback metric: :data:`~abplatform.core.metrics.FEEDBACK_COLUMNS`);
and two for the breakdowns of routing patterns: ``call_totals`` (per slice of calls: a
route rule's requests, a pipeline step, a variant's shadow calls; the sums of
:data:`~abplatform.core.metrics.CALL_COLUMNS`) and ``call_latency_buckets``.

**The aggregation is defined once, here**, as SQL over log rows: :data:`REQUEST_COLUMN_SQL`
says how each unit column is computed from one request row, and :func:`unit_sums`,
:func:`latency_counts` and :func:`outcome_sums` build the ``GROUP BY`` from it. The log
store applies them to the rows each batch inserts (:func:`upsert_statements`, additive
upserts in the same transaction), :func:`rebuild` to a whole experiment's logs, and the
cumulative series (:mod:`abplatform.store.series`) to time buckets of a phase, so all three
agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import BINS, CALL_COLUMNS, FEEDBACK_COLUMNS, REQUEST_COLUMNS
from abplatform.core.stats import LatencyBins

REQUEST_COLUMN_SQL: dict[str, str] = {
    "requests": "1",
    "errors": "CASE WHEN status IN ('error', 'timeout') THEN 1 ELSE 0 END",
    "successes": "CASE WHEN status = 'ok' THEN 1 ELSE 0 END",
    "latency_ms": "CASE WHEN status = 'ok' THEN latency_ms ELSE 0 END",
    "valid_requests": "CASE WHEN status <> 'rejected' THEN 1 ELSE 0 END",
    "rejected": "CASE WHEN status = 'rejected' THEN 1 ELSE 0 END",
    "fallbacks": "CASE WHEN fallback THEN 1 ELSE 0 END",
    "billed_s": "CASE WHEN status <> 'rejected' THEN coalesce(billed_s, 0) ELSE 0 END",
    "cost_usd": "CASE WHEN status <> 'rejected' THEN coalesce(cost_usd, 0) ELSE 0 END",
    "unpriced": "CASE WHEN status <> 'rejected' AND cost_usd IS NULL THEN 1 ELSE 0 END",
}
"""Each unit column of the catalogue as an expression over one ``requests`` row, whose
``status`` is the assigned variant's outcome (:class:`abplatform.core.records.RequestStatus`)
and ``fallback`` says whether the control then served it. Cost columns count the requests
not rejected for the caller's arguments; a request without a cost is ``unpriced``."""

FEEDBACK_COLUMN_SQL: dict[str, str] = {"value": "sum(value)", "count": "count(*)"}
"""Each feedback unit column of the catalogue as an aggregate over ``outcomes`` rows."""

_FAILED = "status IN ('error', 'timeout')"
_VALID = "status NOT IN ('rejected', 'skipped')"
CALL_COLUMN_SQL: dict[str, str] = {
    "calls": "1",
    "errors": f"CASE WHEN {_FAILED} THEN 1 ELSE 0 END",
    "rejected": "CASE WHEN status = 'rejected' THEN 1 ELSE 0 END",
    "skipped": "CASE WHEN status = 'skipped' THEN 1 ELSE 0 END",
    "successes": "CASE WHEN status = 'ok' THEN 1 ELSE 0 END",
    "latency_ms": "CASE WHEN status = 'ok' THEN ms ELSE 0 END",
    "billed_s": f"CASE WHEN {_VALID} THEN coalesce(billed_s, 0) ELSE 0 END",
    "cost_usd": f"CASE WHEN {_VALID} THEN coalesce(cost_usd, 0) ELSE 0 END",
    "unpriced": f"CASE WHEN {_VALID} AND cost_usd IS NULL THEN 1 ELSE 0 END",
    "live_errors": "CASE WHEN live_status IN ('error', 'timeout') THEN 1 ELSE 0 END",
    "live_successes": "CASE WHEN live_status = 'ok' THEN 1 ELSE 0 END",
    "live_latency_ms": "CASE WHEN live_status = 'ok' THEN live_ms ELSE 0 END",
    "live_cost_usd": "CASE WHEN live_status IS NOT NULL THEN coalesce(live_cost, 0) ELSE 0 END",
}
"""Each column of :data:`~abplatform.core.metrics.CALL_COLUMNS` as an expression over one
row of :func:`call_rows` (``status``, ``ms``, ``billed_s``, ``cost_usd`` of the call; for a
shadow call ``live_status``, ``live_ms``, ``live_cost`` of the same request's live answer)."""

if (
    tuple(REQUEST_COLUMN_SQL) != REQUEST_COLUMNS
    or tuple(FEEDBACK_COLUMN_SQL) != FEEDBACK_COLUMNS
    or tuple(CALL_COLUMN_SQL) != CALL_COLUMNS
):
    raise RuntimeError("the rollup SQL must define exactly the catalogue's unit columns")

UNIT_KEYS = ("experiment_id", "phase_id", "unit_id", "variant_id")
BUCKET_KEYS = ("experiment_id", "phase_id", "variant_id", "bucket")
OUTCOME_KEYS = ("experiment_id", "phase_id", "unit_id", "metric")
CALL_KEYS = (
    "experiment_id", "phase_id", "variant_id", "route_id", "rule", "kind", "step", "app_id"
)  # fmt: skip


def call_rows(source: str) -> str:
    """A parenthesised subquery ``k``: one row per call slice member of the request rows of
    ``source`` (not QA-forced): each request a route's rule served (``kind`` "request"),
    and each element of a request's ``calls`` (pipeline steps, shadow calls). 0 / '' mark
    "none" in the keys. A step or shadow belongs to the assigned variant (the served one
    for a unit outside the experiment)."""
    return f"""(
    SELECT coalesce(experiment_id, 0) AS experiment_id, coalesce(phase_id, 0) AS phase_id,
           coalesce(assigned_variant_id, 0) AS variant_id, route_id, coalesce(rule, '') AS rule,
           'request' AS kind, 0 AS step, coalesce(backend_app_id, '') AS app_id, status,
           latency_ms AS ms, billed_s, cost_usd, NULL::text AS live_status,
           NULL::float8 AS live_ms, NULL::float8 AS live_cost
    FROM (SELECT * FROM {source}) AS q WHERE route_id IS NOT NULL AND NOT forced
    UNION ALL
    SELECT coalesce(q.experiment_id, 0), coalesce(q.phase_id, 0),
           coalesce(q.assigned_variant_id, q.served_variant_id, 0), 0, '', c->>'kind',
           (c->>'step')::int, c->>'app', c->>'status', (c->>'ms')::float8,
           (c->>'billed_s')::float8, (c->>'cost_usd')::float8,
           CASE WHEN c->>'kind' = 'shadow' THEN q.status END, q.latency_ms, q.cost_usd
    FROM (SELECT * FROM {source}) AS q CROSS JOIN LATERAL jsonb_array_elements(q.calls) AS c
    WHERE q.calls IS NOT NULL AND NOT q.forced
) AS k"""


def call_sums(source: str) -> str:
    """``SELECT`` of the call slice sums of the request rows of ``source``."""
    keys = ", ".join(CALL_KEYS)
    sums = ", ".join(f"sum({expr}) AS {col}" for col, expr in CALL_COLUMN_SQL.items())
    return f"SELECT {keys}, {sums} FROM {call_rows(source)} GROUP BY {keys}"


def call_latency_counts(source: str) -> str:
    """``SELECT`` of the latency histogram counts of the successful calls of ``source``."""
    keys = ", ".join(CALL_KEYS)
    return (
        f"SELECT {keys}, {latency_bucket_sql('ms')} AS bucket, count(*) AS count "
        f"FROM {call_rows(source)} WHERE status = 'ok' GROUP BY {keys}, bucket"
    )


def latency_bucket_sql(column: str = "latency_ms", bins: LatencyBins = BINS) -> str:
    """PostgreSQL expression for the histogram bucket of ``column`` (ms), the SQL mirror of
    :meth:`LatencyBins.bucket`: ``width_bucket(ln(x), ln(lower), ln(upper), n_bins)``, with
    zero latencies in bucket 0."""
    return (
        f"width_bucket(ln(greatest({column}, {bins.lower / 2!r})), "
        f"ln({bins.lower!r}), ln({bins.upper!r}), {bins.n_bins})"
    )


def _extra(keys: Sequence[str]) -> str:
    return "".join(f", {k}" for k in keys)


def unit_sums(source: str, extra_keys: Sequence[str] = ()) -> str:
    """``SELECT`` of per-unit request sums from the request rows of ``source`` (a table
    or a parenthesised subquery with an alias), one row per experiment, phase, unit,
    assigned variant (and ``extra_keys``). Requests of units outside the coverage
    (no assigned variant) and QA-forced requests are not analysed and left out."""
    sums = ", ".join(f"sum({expr}) AS {col}" for col, expr in REQUEST_COLUMN_SQL.items())
    extra = _extra(extra_keys)
    return (
        f"SELECT experiment_id, phase_id, unit_id, assigned_variant_id AS variant_id{extra}, "
        f"{sums} FROM {source} WHERE assigned_variant_id IS NOT NULL AND NOT forced "
        f"GROUP BY experiment_id, phase_id, unit_id, assigned_variant_id{extra}"
    )


def latency_counts(source: str, extra_keys: Sequence[str] = ()) -> str:
    """``SELECT`` of latency histogram counts of the successful, not QA-forced request rows
    of ``source``, per experiment, phase, assigned variant, bucket (and ``extra_keys``)."""
    extra = _extra(extra_keys)
    return (
        f"SELECT experiment_id, phase_id, assigned_variant_id AS variant_id, "
        f"{latency_bucket_sql()} AS bucket{extra}, count(*) AS count FROM {source} "
        f"WHERE assigned_variant_id IS NOT NULL AND NOT forced AND status = 'ok' "
        f"GROUP BY experiment_id, phase_id, assigned_variant_id, bucket{extra}"
    )


def outcome_sums(source: str, extra_keys: Sequence[str] = ()) -> str:
    """``SELECT`` of per-unit feedback sums (``count``, ``value``, and whether every value
    was 0 or 1) of the outcome rows of ``source`` that have a phase."""
    extra = _extra(extra_keys)
    sums = ", ".join(f"{expr} AS {col}" for col, expr in FEEDBACK_COLUMN_SQL.items())
    return (
        f"SELECT experiment_id, phase_id, unit_id, metric{extra}, {sums}, "
        f"bool_and(value IN (0, 1)) AS all_binary FROM {source} "
        f"WHERE phase_id IS NOT NULL GROUP BY experiment_id, phase_id, unit_id, metric{extra}"
    )


def _upsert(table: str, keys: Sequence[str], values: Sequence[str], select: str) -> str:
    """Additive upsert of ``select`` into ``table``, in key order (a fixed lock order, so
    concurrent writers cannot deadlock on each other's rows)."""
    sets = ", ".join(
        f"{v} = {table}.{v} AND EXCLUDED.{v}"
        if v == "all_binary"
        else f"{v} = {table}.{v} + EXCLUDED.{v}"
        for v in values
    )
    cols = ", ".join((*keys, *values))
    order = ", ".join(str(i + 1) for i in range(len(keys)))
    return (
        f"INSERT INTO {table} ({cols}) {select} ORDER BY {order} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"
    )


def upsert_unit_totals(source: str) -> str:
    """Add the per-unit request sums of ``source`` to ``unit_totals``."""
    return _upsert("unit_totals", UNIT_KEYS, REQUEST_COLUMNS, unit_sums(source))


def upsert_latency_buckets(source: str) -> str:
    """Add the latency histogram counts of ``source`` to ``latency_buckets``."""
    return _upsert("latency_buckets", BUCKET_KEYS, ("count",), latency_counts(source))


def upsert_call_totals(source: str) -> str:
    """Add the call slice sums of ``source`` to ``call_totals``."""
    return _upsert("call_totals", CALL_KEYS, CALL_COLUMNS, call_sums(source))


def upsert_call_buckets(source: str) -> str:
    """Add the call latency histogram counts of ``source`` to ``call_latency_buckets``."""
    return _upsert(
        "call_latency_buckets", (*CALL_KEYS, "bucket"), ("count",), call_latency_counts(source)
    )


def upsert_unit_outcomes(source: str) -> str:
    """Add the per-unit feedback sums of ``source`` to ``unit_outcomes``."""
    values = (*FEEDBACK_COLUMNS, "all_binary")
    return _upsert("unit_outcomes", OUTCOME_KEYS, values, outcome_sums(source))


_OWN_REQUESTS = "(SELECT * FROM requests WHERE experiment_id = %(e)s) AS r"
REBUILD_SQL = (
    "DELETE FROM unit_totals WHERE experiment_id = %(e)s",
    "DELETE FROM latency_buckets WHERE experiment_id = %(e)s",
    "DELETE FROM unit_outcomes WHERE experiment_id = %(e)s",
    "DELETE FROM call_totals WHERE experiment_id = %(e)s",
    "DELETE FROM call_latency_buckets WHERE experiment_id = %(e)s",
    upsert_unit_totals(_OWN_REQUESTS),
    upsert_latency_buckets(_OWN_REQUESTS),
    upsert_call_totals(_OWN_REQUESTS),
    upsert_call_buckets(_OWN_REQUESTS),
    """UPDATE outcomes o SET phase_id = r.phase_id FROM requests r
       WHERE o.experiment_id = %(e)s AND o.phase_id IS NULL AND r.request_id = o.request_id""",
    """UPDATE outcomes o SET phase_id = p.id FROM phases p
       WHERE o.experiment_id = %(e)s AND o.phase_id IS NULL AND p.experiment_id = o.experiment_id
         AND o.created_at >= p.started_at AND o.created_at < coalesce(p.ended_at, 'infinity')""",
    upsert_unit_outcomes("(SELECT * FROM outcomes WHERE experiment_id = %(e)s) AS o"),
)


def rebuild(conn: Connection, experiment_id: int) -> None:
    """Recompute every rollup of one live experiment from its logs (after a bulk load).

    Raises:
        InvalidInputError: the experiment was imported: its unit rows are its data, there
            are no logs to rebuild them from.
    """
    source = conn.exec_driver_sql(
        "SELECT source FROM experiments WHERE id = %(e)s", {"e": experiment_id}
    ).scalar()
    if source == "import":
        raise InvalidInputError(
            f"experiment {experiment_id} was imported; its rollups are its data and "
            "cannot be rebuilt from logs"
        )
    for sql in REBUILD_SQL:
        conn.exec_driver_sql(sql, {"e": experiment_id})


def add_exposures(
    conn: Connection, experiment_id: int, phase_id: int, units: Sequence[tuple[str, int]]
) -> None:
    """Record imported units' exposure: ``(unit_id, variant_id)`` pairs as ``unit_totals``
    rows with no requests (an imported experiment has per-unit outcomes, no requests)."""
    from abplatform.store.logstore import copy_rows

    zeros = (0,) * len(REQUEST_COLUMNS)
    copy_rows(
        conn,
        "unit_totals",
        (*UNIT_KEYS, *REQUEST_COLUMNS),
        [(experiment_id, phase_id, unit, variant, *zeros) for unit, variant in units],
    )


__all__ = [
    "CALL_COLUMN_SQL",
    "CALL_KEYS",
    "FEEDBACK_COLUMN_SQL",
    "REQUEST_COLUMN_SQL",
    "add_exposures",
    "call_latency_counts",
    "call_rows",
    "call_sums",
    "latency_bucket_sql",
    "latency_counts",
    "outcome_sums",
    "rebuild",
    "unit_sums",
    "upsert_call_buckets",
    "upsert_call_totals",
    "upsert_latency_buckets",
    "upsert_unit_outcomes",
    "upsert_unit_totals",
]
