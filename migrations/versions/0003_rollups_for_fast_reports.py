"""rollups for fast reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:44:55
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latency_buckets",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_latency_buckets_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["phases.id"],
            name=op.f("fk_latency_buckets_phase_id_phases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_latency_buckets_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "phase_id", "variant_id", "bucket", name=op.f("pk_latency_buckets")
        ),
    )
    op.create_table(
        "unit_outcomes",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("cnt", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Double(), nullable=False),
        sa.Column("all_binary", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_unit_outcomes_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["phases.id"],
            name=op.f("fk_unit_outcomes_phase_id_phases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "phase_id", "unit_id", "metric", name=op.f("pk_unit_outcomes")
        ),
    )
    op.create_table(
        "unit_totals",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("reqs", sa.BigInteger(), nullable=False),
        sa.Column("errs", sa.BigInteger(), nullable=False),
        sa.Column("oks", sa.BigInteger(), nullable=False),
        sa.Column("lat_sum", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_unit_totals_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["phases.id"],
            name=op.f("fk_unit_totals_phase_id_phases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_unit_totals_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "phase_id", "unit_id", "variant_id", name=op.f("pk_unit_totals")
        ),
    )
    op.add_column("outcomes", sa.Column("phase_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_outcomes_phase_id_phases"),
        "outcomes",
        "phases",
        ["phase_id"],
        ["id"],
        ondelete="CASCADE",
    )
    # Backfill the new rollups from the existing logs. Frozen here on purpose: a migration
    # must not change when abplatform.rollups does. Buckets: 700 log-spaced bins over
    # 0.1 ms..1e6 ms (abplatform.stats.LatencyBins defaults at this revision).
    for sql in BACKFILL:
        op.execute(sql)


BACKFILL = (
    """INSERT INTO unit_totals (experiment_id, phase_id, unit_id, variant_id, reqs, errs, oks,
                                lat_sum)
       SELECT experiment_id, phase_id, unit_id, assigned_variant_id, count(*),
              count(*) FILTER (WHERE status <> 'ok'), count(*) FILTER (WHERE status = 'ok'),
              coalesce(sum(latency_ms) FILTER (WHERE status = 'ok'), 0)
       FROM requests WHERE assigned_variant_id IS NOT NULL
       GROUP BY experiment_id, phase_id, unit_id, assigned_variant_id""",
    """INSERT INTO latency_buckets (experiment_id, phase_id, variant_id, bucket, count)
       SELECT experiment_id, phase_id, assigned_variant_id,
              width_bucket(ln(greatest(latency_ms, 0.05)), ln(0.1), ln(1000000.0), 700),
              count(*)
       FROM requests WHERE assigned_variant_id IS NOT NULL AND status = 'ok'
       GROUP BY 1, 2, 3, 4""",
    """UPDATE outcomes o SET phase_id = r.phase_id FROM requests r
       WHERE o.phase_id IS NULL AND r.request_id = o.request_id""",
    """UPDATE outcomes o SET phase_id = p.id FROM phases p
       WHERE o.phase_id IS NULL AND p.experiment_id = o.experiment_id
         AND o.created_at >= p.started_at AND o.created_at < coalesce(p.ended_at, 'infinity')""",
    """INSERT INTO unit_outcomes (experiment_id, phase_id, unit_id, metric, cnt, total,
                                  all_binary)
       SELECT experiment_id, phase_id, unit_id, metric, count(*), sum(value),
              bool_and(value IN (0, 1))
       FROM outcomes WHERE phase_id IS NOT NULL
       GROUP BY experiment_id, phase_id, unit_id, metric""",
)


def downgrade() -> None:
    op.drop_constraint(op.f("fk_outcomes_phase_id_phases"), "outcomes", type_="foreignkey")
    op.drop_column("outcomes", "phase_id")
    op.drop_table("unit_totals")
    op.drop_table("unit_outcomes")
    op.drop_table("latency_buckets")
