"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:55:59.811759
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hash_seed", sa.String(length=200), nullable=False),
        sa.Column("hash_version", sa.Integer(), nullable=False),
        sa.Column("coverage", sa.Double(), nullable=False),
        sa.Column("primary_metric", sa.String(length=100), nullable=False),
        sa.Column("guardrails", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("fallback_to_control", sa.Boolean(), nullable=False),
        sa.Column("winner_variant_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'running', 'stopped', 'concluded')",
            name=op.f("ck_experiments_status_valid"),
        ),
        sa.CheckConstraint(
            "coverage >= 0 AND coverage <= 1", name=op.f("ck_experiments_coverage_fraction")
        ),
        sa.CheckConstraint(
            "hash_version IN (1, 2)", name=op.f("ck_experiments_hash_version_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_audit_log_experiment_id_experiments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        op.f("ix_audit_log_experiment_id"), "audit_log", ["experiment_id"], unique=False
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("outcome_key", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_outcomes_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("outcome_key", name=op.f("uq_outcomes_outcome_key")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
    )
    op.create_index(
        "ix_outcomes_experiment_metric", "outcomes", ["experiment_id", "metric"], unique=False
    )
    op.create_index(op.f("ix_outcomes_request_id"), "outcomes", ["request_id"], unique=False)
    op.create_table(
        "phases",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("weights", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("allocation", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("hash_seed", sa.String(length=200), nullable=False),
        sa.Column("coverage", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_phases_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phases")),
        sa.UniqueConstraint("experiment_id", "number", name="uq_phases_experiment_number"),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("backend_app_id", sa.String(length=200), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_variants_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variants")),
        sa.UniqueConstraint("experiment_id", "key", name="uq_variants_experiment_key"),
    )
    # experiments.winner_variant_id -> variants: added after both tables exist (cycle).
    op.create_foreign_key(
        op.f("fk_experiments_winner_variant_id_variants"),
        "experiments",
        "variants",
        ["winner_variant_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("assigned_variant_id", sa.Integer(), nullable=True),
        sa.Column("served_variant_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(length=100), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('ok', 'error', 'timeout')", name=op.f("ck_requests_status_valid")
        ),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_requests_latency_nonnegative")),
        sa.ForeignKeyConstraint(
            ["assigned_variant_id"],
            ["variants.id"],
            name=op.f("fk_requests_assigned_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_requests_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["phases.id"],
            name=op.f("fk_requests_phase_id_phases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["served_variant_id"],
            ["variants.id"],
            name=op.f("fk_requests_served_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_requests")),
    )
    op.create_index(
        "ix_requests_experiment_phase", "requests", ["experiment_id", "phase_id"], unique=False
    )
    op.create_index(
        "ix_requests_experiment_unit", "requests", ["experiment_id", "unit_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_requests_experiment_unit", table_name="requests")
    op.drop_index("ix_requests_experiment_phase", table_name="requests")
    op.drop_table("requests")
    op.drop_constraint(
        op.f("fk_experiments_winner_variant_id_variants"), "experiments", type_="foreignkey"
    )
    op.drop_table("variants")
    op.drop_table("phases")
    op.drop_index(op.f("ix_outcomes_request_id"), table_name="outcomes")
    op.drop_index("ix_outcomes_experiment_metric", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_index(op.f("ix_audit_log_experiment_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("experiments")
