"""safe rollouts: one rollout per experiment, and the controller's lease

``rollouts`` keeps a rollout's plan (ramp steps, minimum duration and units, guardrail
margins), where it stands (status, step, the phases of its steps) and the controller's
last evaluation; ``version`` is its optimistic lock. ``controller_leases`` holds the one
row per controller role that decides which process acts (holder, fencing token, expiry
on the database's clock).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False, default: bool = True) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("plan", JSONB(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        _ts("step_started_at"),
        sa.Column("phases", JSONB(), nullable=False),
        sa.Column("last_action", JSONB(), nullable=True),
        _ts("last_checked_at", nullable=True, default=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            ondelete="CASCADE",
            name="fk_rollouts_experiment_id_experiments",
        ),
        sa.UniqueConstraint("experiment_id", name="uq_rollouts_experiment_id"),
        sa.CheckConstraint(
            "status IN ('ramping', 'paused', 'rolled_back', 'promoted', 'ended')",
            name="ck_rollouts_status_valid",
        ),
        sa.CheckConstraint("step >= 0", name="ck_rollouts_step_nonnegative"),
    )
    op.create_table(
        "controller_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        _ts("acquired_at"),
        _ts("renewed_at"),
        _ts("expires_at", default=False),
        sa.PrimaryKeyConstraint("name", name="pk_controller_leases"),
    )


def downgrade() -> None:
    op.drop_table("controller_leases")
    op.drop_table("rollouts")
