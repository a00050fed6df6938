"""rollup columns named by the metric catalogue

Renames the per-unit rollup columns to the unit columns of ``abplatform.core.metrics``
(``REQUEST_COLUMNS``, ``FEEDBACK_COLUMNS``): ``unit_totals`` reqs/errs/oks/lat_sum become
requests/errors/successes/latency_ms, ``unit_outcomes`` cnt/total become count/value.
Data are kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RENAMES = {
    "unit_totals": (
        ("reqs", "requests"),
        ("errs", "errors"),
        ("oks", "successes"),
        ("lat_sum", "latency_ms"),
    ),
    "unit_outcomes": (("cnt", "count"), ("total", "value")),
}


def upgrade() -> None:
    for table, pairs in RENAMES.items():
        for old, new in pairs:
            op.alter_column(table, old, new_column_name=new)


def downgrade() -> None:
    for table, pairs in RENAMES.items():
        for old, new in pairs:
            op.alter_column(table, new, new_column_name=old)
