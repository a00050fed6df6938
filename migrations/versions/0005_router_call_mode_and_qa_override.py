"""router: per-variant call mode; QA-forced requests; no per-row FK checks on the log


``variants.call_mode``: how the router calls the variant's backend, ``run`` (one direct
HTTP call, for backends that answer within a request; the default) or ``queue`` (fal's
queue: submit, status stream, result; for long jobs). ``requests.forced``: the request was
routed by a QA override (an operator forced the variant); such rows are logged but never
counted by the analysis (the rollups leave them out). The foreign keys of ``requests``
and ``unit_totals`` are dropped: their per-row triggers took about 60% of the time of
moving a logged batch into ``requests`` (EXPLAIN ANALYZE, issue 10); the log store checks
each batch's (experiment, phase) pairs set-wise instead, and nothing deletes experiments.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


#: (table, constraint, column, referred table) of the dropped foreign keys.
LOG_FOREIGN_KEYS = (
    ("requests", "fk_requests_experiment_id_experiments", "experiment_id", "experiments"),
    ("requests", "fk_requests_phase_id_phases", "phase_id", "phases"),
    ("requests", "fk_requests_assigned_variant_id_variants", "assigned_variant_id", "variants"),
    ("requests", "fk_requests_served_variant_id_variants", "served_variant_id", "variants"),
    ("unit_totals", "fk_unit_totals_experiment_id_experiments", "experiment_id", "experiments"),
    ("unit_totals", "fk_unit_totals_phase_id_phases", "phase_id", "phases"),
    ("unit_totals", "fk_unit_totals_variant_id_variants", "variant_id", "variants"),
)


def upgrade() -> None:
    for table, name, _, _ in LOG_FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    op.add_column(
        "variants",
        sa.Column("call_mode", sa.String(8), nullable=False, server_default="run"),
    )
    op.create_check_constraint("call_mode_known", "variants", "call_mode IN ('run', 'queue')")
    op.add_column(
        "requests",
        sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("requests", "forced")
    op.drop_constraint("call_mode_known", "variants", type_="check")
    op.drop_column("variants", "call_mode")
    for table, name, column, referred in LOG_FOREIGN_KEYS:
        op.create_foreign_key(name, table, referred, [column], ["id"], ondelete="CASCADE")
