"""requests without the (experiment, unit) index

Reports and the dashboard read per-unit figures from the rollups (``unit_totals``), and
no query filters ``requests`` by unit any more, while maintaining the index cost about
40% of moving each logged batch into ``requests`` (EXPLAIN ANALYZE of the log store's
move of a 20,000-row batch: 347 ms with it, 165 ms without; issue 10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_requests_experiment_unit", table_name="requests")


def downgrade() -> None:
    op.create_index("ix_requests_experiment_unit", "requests", ["experiment_id", "unit_id"])
