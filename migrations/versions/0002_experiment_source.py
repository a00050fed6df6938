"""experiments.source: live (routed) or import (historical per-unit data)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "experiments",
        sa.Column("source", sa.String(length=16), server_default="live", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_experiments_source_known"), "experiments", "source IN ('live', 'import')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_experiments_source_known"), "experiments", type_="check")
    op.drop_column("experiments", "source")
