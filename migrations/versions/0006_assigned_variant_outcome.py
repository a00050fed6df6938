"""the assigned variant's outcome: fallbacks and requests rejected for the caller's arguments

``requests.status`` becomes the outcome of the call to the *assigned* variant and may be
``rejected`` (the backend refused the caller's arguments, a 4xx); the new
``requests.fallback`` says the control served the request after the assigned variant
failed. ``unit_totals`` gains the catalogue's new unit columns ``valid_requests``,
``rejected`` and ``fallbacks``.

Backfill (frozen SQL, as in 0003: a migration must not change when the live rollup SQL
does): a logged ``ok`` whose served variant is not its assigned one was a fallback, so it
becomes ``error`` with ``fallback`` set (the old log did not say whether it was an error
or a timeout); an ``error`` whose recorded backend status was a 4xx that the router passed
through to the caller becomes ``rejected``. Then the request rollups of live experiments
are recomputed from their logs. Downgrade restores the old meaning (fallbacks ``ok``,
rejections ``error``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEW_UNIT_COLUMNS = ("valid_requests", "rejected", "fallbacks")
LIVE = "experiment_id IN (SELECT id FROM experiments WHERE source = 'live')"

# The 4xx answers the router passed through to the caller (it answered 502 for 401, 403,
# 404, 408, 409 and 429: its own credentials or routing, not the caller's arguments).
REJECTED_ERROR = (
    r"error ~ '^\{''backend'': ''[^'']*'', ''status'': 4[0-9][0-9],' "
    r"AND error !~ '^\{''backend'': ''[^'']*'', ''status'': (401|403|404|408|409|429),'"
)

UPGRADE_REQUESTS = (
    """UPDATE requests SET status = 'error', fallback = true,
              error = coalesce(error, 'the assigned variant failed; the control served '
                                      'it (logged before revision 0006)')
       WHERE status = 'ok' AND assigned_variant_id IS NOT NULL
         AND served_variant_id IS NOT NULL AND served_variant_id <> assigned_variant_id""",
    f"UPDATE requests SET status = 'rejected' WHERE status = 'error' AND {REJECTED_ERROR}",
)

UPGRADE_ROLLUPS = (
    f"DELETE FROM unit_totals WHERE {LIVE}",
    f"DELETE FROM latency_buckets WHERE {LIVE}",
    f"""INSERT INTO unit_totals (experiment_id, phase_id, unit_id, variant_id, requests,
                                 errors, successes, latency_ms, valid_requests, rejected,
                                 fallbacks)
        SELECT experiment_id, phase_id, unit_id, assigned_variant_id, count(*),
               count(*) FILTER (WHERE status IN ('error', 'timeout')),
               count(*) FILTER (WHERE status = 'ok'),
               coalesce(sum(latency_ms) FILTER (WHERE status = 'ok'), 0),
               count(*) FILTER (WHERE status <> 'rejected'),
               count(*) FILTER (WHERE status = 'rejected'),
               count(*) FILTER (WHERE fallback)
        FROM requests WHERE assigned_variant_id IS NOT NULL AND NOT forced AND {LIVE}
        GROUP BY experiment_id, phase_id, unit_id, assigned_variant_id""",
    f"""INSERT INTO latency_buckets (experiment_id, phase_id, variant_id, bucket, count)
        SELECT experiment_id, phase_id, assigned_variant_id,
               width_bucket(ln(greatest(latency_ms, 0.05)), ln(0.1), ln(1000000.0), 700),
               count(*)
        FROM requests
        WHERE assigned_variant_id IS NOT NULL AND status = 'ok' AND NOT forced AND {LIVE}
        GROUP BY 1, 2, 3, 4""",
)

DOWNGRADE_ROLLUPS = (
    f"DELETE FROM unit_totals WHERE {LIVE}",
    f"DELETE FROM latency_buckets WHERE {LIVE}",
    f"""INSERT INTO unit_totals (experiment_id, phase_id, unit_id, variant_id, requests,
                                 errors, successes, latency_ms)
        SELECT experiment_id, phase_id, unit_id, assigned_variant_id, count(*),
               count(*) FILTER (WHERE status <> 'ok'), count(*) FILTER (WHERE status = 'ok'),
               coalesce(sum(latency_ms) FILTER (WHERE status = 'ok'), 0)
        FROM requests WHERE assigned_variant_id IS NOT NULL AND NOT forced AND {LIVE}
        GROUP BY experiment_id, phase_id, unit_id, assigned_variant_id""",
    f"""INSERT INTO latency_buckets (experiment_id, phase_id, variant_id, bucket, count)
        SELECT experiment_id, phase_id, assigned_variant_id,
               width_bucket(ln(greatest(latency_ms, 0.05)), ln(0.1), ln(1000000.0), 700),
               count(*)
        FROM requests
        WHERE assigned_variant_id IS NOT NULL AND status = 'ok' AND NOT forced AND {LIVE}
        GROUP BY 1, 2, 3, 4""",
)


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.drop_constraint(op.f("ck_requests_status_valid"), "requests", type_="check")
    op.create_check_constraint(
        op.f("ck_requests_status_valid"),
        "requests",
        "status IN ('ok', 'error', 'timeout', 'rejected')",
    )
    for column in NEW_UNIT_COLUMNS:
        op.add_column(
            "unit_totals",
            sa.Column(column, sa.BigInteger(), server_default="0", nullable=False),
        )
        op.alter_column("unit_totals", column, server_default=None)
    for sql in (*UPGRADE_REQUESTS, *UPGRADE_ROLLUPS):
        op.execute(sql)


def downgrade() -> None:
    op.execute("UPDATE requests SET status = 'error' WHERE status = 'rejected'")
    op.execute("UPDATE requests SET status = 'ok' WHERE fallback")
    op.drop_constraint(op.f("ck_requests_status_valid"), "requests", type_="check")
    op.create_check_constraint(
        op.f("ck_requests_status_valid"), "requests", "status IN ('ok', 'error', 'timeout')"
    )
    op.drop_column("requests", "fallback")
    for column in NEW_UNIT_COLUMNS:
        op.drop_column("unit_totals", column)
    for sql in DOWNGRADE_ROLLUPS:
        op.execute(sql)
