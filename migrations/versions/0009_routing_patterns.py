"""routing patterns: routes by input, pipelines, shadows, runner hints, namespaces, cost

* ``routes``: routing configs (declared arguments, ordered rules as JSON).
* ``experiments.namespace``/``namespace_start``/``namespace_end``: a slice (fractions) of
  a namespace shared by mutually exclusive experiments.
* ``variants.arguments``/``steps``/``runner_hint``/``shadow``: argument overrides, the
  further calls of a pipeline, fal's runner hint template, the app mirrored to.
* ``requests``: ``experiment_id``/``phase_id`` may be null (a route's rule sent the request
  straight to an app); ``route_id``, ``rule``, ``backend_app_id``, ``billed_s``,
  ``cost_usd`` and ``calls`` (JSON: pipeline steps and shadow calls).
* ``unit_totals.billed_s``/``cost_usd``/``unpriced``: the catalogue's new unit columns
  (the logs before this revision have no cost: their valid requests are unpriced).
* ``call_totals``/``call_latency_buckets``: rollups of route rules, pipeline steps and
  shadow calls (empty: no earlier request has any).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CALL_KEYS = (
    ("experiment_id", sa.Integer()),
    ("phase_id", sa.Integer()),
    ("variant_id", sa.Integer()),
    ("route_id", sa.Integer()),
    ("rule", sa.String(64)),
    ("kind", sa.String(8)),
    ("step", sa.Integer()),
    ("app_id", sa.String(200)),
)
CALL_SUMS = (
    ("calls", sa.BigInteger()), ("errors", sa.BigInteger()), ("rejected", sa.BigInteger()),
    ("skipped", sa.BigInteger()), ("successes", sa.BigInteger()), ("latency_ms", sa.Double()),
    ("billed_s", sa.Double()), ("cost_usd", sa.Double()), ("unpriced", sa.BigInteger()),
    ("live_errors", sa.BigInteger()), ("live_successes", sa.BigInteger()),
    ("live_latency_ms", sa.Double()), ("live_cost_usd", sa.Double()),
)  # fmt: skip


def _keys() -> list[sa.Column]:
    return [sa.Column(name, kind, nullable=False) for name, kind in CALL_KEYS]


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("arguments", JSONB(), nullable=False),
        sa.Column("rules", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routes"),
        sa.UniqueConstraint("name", name="uq_routes_name"),
    )  # fmt: skip
    op.add_column("experiments", sa.Column("namespace", sa.String(100)))
    op.add_column("experiments", sa.Column("namespace_start", sa.Double()))
    op.add_column("experiments", sa.Column("namespace_end", sa.Double()))
    op.create_check_constraint(
        "namespace_slice",
        "experiments",
        "namespace IS NULL OR (0 <= namespace_start AND namespace_start < namespace_end "
        "AND namespace_end <= 1)",
    )
    op.add_column("variants", sa.Column("arguments", JSONB(), nullable=False, server_default="{}"))
    op.add_column("variants", sa.Column("steps", JSONB(), nullable=False, server_default="[]"))
    op.add_column("variants", sa.Column("runner_hint", sa.String(200)))
    op.add_column("variants", sa.Column("shadow", JSONB()))
    op.alter_column("requests", "experiment_id", nullable=True)
    op.alter_column("requests", "phase_id", nullable=True)
    for name, kind in (
        ("route_id", sa.Integer()), ("rule", sa.String(64)), ("backend_app_id", sa.String(200)),
        ("billed_s", sa.Double()), ("cost_usd", sa.Double()), ("calls", JSONB()),
    ):  # fmt: skip
        op.add_column("requests", sa.Column(name, kind))
    for name, kind in (("billed_s", sa.Double()), ("cost_usd", sa.Double()),
                       ("unpriced", sa.BigInteger())):  # fmt: skip
        op.add_column("unit_totals", sa.Column(name, kind, nullable=False, server_default="0"))
        op.alter_column("unit_totals", name, server_default=None)
    # Earlier requests have no cost: they are unpriced, as a rebuild from the logs counts them.
    op.execute("UPDATE unit_totals SET unpriced = valid_requests WHERE valid_requests > 0")
    op.create_table(
        "call_totals",
        *_keys(),
        *[sa.Column(name, kind, nullable=False) for name, kind in CALL_SUMS],
        sa.PrimaryKeyConstraint(*(k for k, _ in CALL_KEYS), name="pk_call_totals"),
    )
    op.create_index("ix_call_totals_route", "call_totals", ["route_id"])
    op.create_table(
        "call_latency_buckets",
        *_keys(),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            *(k for k, _ in CALL_KEYS), "bucket", name="pk_call_latency_buckets"
        ),
    )
    op.create_index("ix_call_latency_buckets_route", "call_latency_buckets", ["route_id"])


def downgrade() -> None:
    op.drop_table("call_latency_buckets")
    op.drop_table("call_totals")
    for name in ("billed_s", "cost_usd", "unpriced"):
        op.drop_column("unit_totals", name)
    for name in ("route_id", "rule", "backend_app_id", "billed_s", "cost_usd", "calls"):
        op.drop_column("requests", name)
    op.execute("DELETE FROM requests WHERE experiment_id IS NULL OR phase_id IS NULL")
    op.alter_column("requests", "experiment_id", nullable=False)
    op.alter_column("requests", "phase_id", nullable=False)
    for name in ("arguments", "steps", "runner_hint", "shadow"):
        op.drop_column("variants", name)
    op.drop_constraint("namespace_slice", "experiments", type_="check")
    for name in ("namespace", "namespace_start", "namespace_end"):
        op.drop_column("experiments", name)
    op.drop_table("routes")
