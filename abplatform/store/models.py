"""SQLAlchemy 2 typed ORM models: the platform's PostgreSQL schema.

Tables: ``experiments``, ``variants``, ``phases``, ``routes``, ``requests``, ``outcomes``,
``audit_log``, and the rollups ``unit_totals``, ``latency_buckets``, ``unit_outcomes``,
``call_totals``, ``call_latency_buckets``.
All timestamps are ``timestamptz`` and written in UTC. Split weights are stored as
fractions in [0, 1] summing to 1 (the service and UI speak percent).
The schema is created by the Alembic migrations in ``migrations/``, never by ``create_all``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from abplatform.core.lifecycle import ExperimentStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _ts(**kw: Any) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), **kw)


class Experiment(Base):
    """An experiment comparing model versions; ``version`` guards against stale writes."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=ExperimentStatus.DRAFT.value)
    hash_seed: Mapped[str] = mapped_column(String(200))
    hash_version: Mapped[int] = mapped_column(Integer, default=2)
    coverage: Mapped[float] = mapped_column(Double, default=1.0)
    primary_metric: Mapped[str] = mapped_column(String(100), default="error_rate")
    guardrails: Mapped[list[Any]] = mapped_column(default=list)
    fallback_to_control: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16), default="live", server_default="live")
    winner_variant_id: Mapped[int | None] = mapped_column(
        ForeignKey("variants.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts(onupdate=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A slice [start, end) (fractions) of a namespace shared by mutually exclusive experiments.
    namespace: Mapped[str | None] = mapped_column(String(100))
    namespace_start: Mapped[float | None] = mapped_column(Double)
    namespace_end: Mapped[float | None] = mapped_column(Double)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="experiment",
        order_by="Variant.position",
        foreign_keys="Variant.experiment_id",
        cascade="all, delete-orphan",
    )
    phases: Mapped[list[Phase]] = relationship(
        back_populates="experiment", order_by="Phase.number", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'running', 'stopped', 'concluded')", name="status_valid"
        ),
        CheckConstraint("coverage >= 0 AND coverage <= 1", name="coverage_fraction"),
        CheckConstraint("hash_version IN (1, 2)", name="hash_version_known"),
        CheckConstraint("source IN ('live', 'import')", name="source_known"),
        CheckConstraint(
            "namespace IS NULL OR (0 <= namespace_start AND namespace_start < namespace_end "
            "AND namespace_end <= 1)",
            name="namespace_slice",
        ),
    )


class Variant(Base):
    """One arm: a ``model_version`` label served by a fal backend app, called directly
    (``call_mode`` "run") or through fal's queue ("queue"); ``arguments`` are constants
    merged over the caller's, ``steps`` more calls of a pipeline (JSON list of
    :class:`abplatform.core.specs.StepSpec`), ``runner_hint`` a template of fal's runner
    hint, ``shadow`` the app it mirrors a share of requests to (JSON ``{"app", "share"
    (fraction), "call_mode"}``)."""

    __tablename__ = "variants"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(100))
    backend_app_id: Mapped[str] = mapped_column(String(200))
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    call_mode: Mapped[str] = mapped_column(String(8), default="run", server_default="run")
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    steps: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    runner_hint: Mapped[str | None] = mapped_column(String(200))
    shadow: Mapped[dict[str, Any] | None] = mapped_column()

    experiment: Mapped[Experiment] = relationship(
        back_populates="variants", foreign_keys=[experiment_id]
    )

    __table_args__ = (
        UniqueConstraint("experiment_id", "key", name="uq_variants_experiment_key"),
        CheckConstraint("call_mode IN ('run', 'queue')", name="call_mode_known"),
    )


class Phase(Base):
    """A period with fixed split weights; every weight change starts a new phase."""

    __tablename__ = "phases"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    weights: Mapped[list[Any]] = mapped_column()
    allocation: Mapped[list[Any]] = mapped_column()
    hash_seed: Mapped[str] = mapped_column(String(200))
    coverage: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = _ts()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    experiment: Mapped[Experiment] = relationship(back_populates="phases")

    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_phases_experiment_number"),
    )


class Route(Base):
    """A routing config: declared ``arguments`` and ordered ``rules`` (JSON of
    :class:`abplatform.core.routes.RouteSpec`), addressed by ``POST /`` with ``route``."""

    __tablename__ = "routes"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rules: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts(onupdate=func.now())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class RequestLog(Base):
    """One routed request, written by the router's background writer
    (:class:`abplatform.core.records.RequestRecord`: ``status`` is the assigned
    variant's outcome, ``fallback`` whether the control then served it). ``forced`` rows
    were routed by a QA override and are never analysed. A request a route's rule sent
    straight to an app has no experiment or phase."""

    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # No foreign keys on the log table: per-row FK triggers took 60% of the insert time
    # (EXPLAIN ANALYZE, issue 10); the log store checks a batch's phases set-wise instead.
    experiment_id: Mapped[int | None] = mapped_column(Integer)
    phase_id: Mapped[int | None] = mapped_column(Integer)
    unit_id: Mapped[str] = mapped_column(String(200))
    assigned_variant_id: Mapped[int | None] = mapped_column(Integer)
    served_variant_id: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(100))
    latency_ms: Mapped[float] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    route_id: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str | None] = mapped_column(String(64))
    backend_app_id: Mapped[str | None] = mapped_column(String(200))
    billed_s: Mapped[float | None] = mapped_column(Double)
    cost_usd: Mapped[float | None] = mapped_column(Double)
    calls: Mapped[list[Any] | None] = mapped_column()

    __table_args__ = (
        CheckConstraint("status IN ('ok', 'error', 'timeout', 'rejected')", name="status_valid"),
        CheckConstraint("latency_ms >= 0", name="latency_nonnegative"),
        Index("ix_requests_experiment_phase", "experiment_id", "phase_id"),
    )


class Outcome(Base):
    """A feedback value (metric, value) for a request and/or a unit."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    outcome_key: Mapped[str] = mapped_column(String(64), unique=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = _ts()

    __table_args__ = (Index("ix_outcomes_experiment_metric", "experiment_id", "metric"),)


class AuditEntry(Base):
    """Who changed what, when: the before and after state of every write action."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL"), index=True
    )
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = _ts()
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class UnitTotal(Base):
    """Rollup: per (experiment, phase, unit, assigned variant), the unit's request totals.

    Maintained by the log writer in the same transaction as the request rows it inserts,
    so reports aggregate one row per unit instead of scanning every request. The value
    columns are :data:`abplatform.core.metrics.REQUEST_COLUMNS` (how each is computed
    from a request row: :data:`abplatform.store.rollups.REQUEST_COLUMN_SQL`);
    ``latency_ms`` is the summed latency (ms) of successful requests. An imported
    experiment's units have rows with zero requests (their exposure).
    """

    __tablename__ = "unit_totals"

    # Keys without foreign keys, like ``requests`` (whose rows they sum): see there.
    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    variant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    successes: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Double)
    valid_requests: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    fallbacks: Mapped[int] = mapped_column(BigInteger)
    billed_s: Mapped[float] = mapped_column(Double)
    cost_usd: Mapped[float] = mapped_column(Double)
    unpriced: Mapped[int] = mapped_column(BigInteger)


class LatencyBucket(Base):
    """Rollup: count of successful requests per (experiment, phase, variant, latency bucket).

    Buckets follow :class:`abplatform.core.stats.LatencyBins` (700 log-spaced bins, 0.1 ms–1000 s).
    """

    __tablename__ = "latency_buckets"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    phase_id: Mapped[int] = mapped_column(
        ForeignKey("phases.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[int] = mapped_column(
        ForeignKey("variants.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class UnitOutcome(Base):
    """Rollup: per (experiment, phase, unit, metric), ``count`` and sum (``value``) of
    outcome values (:data:`abplatform.core.metrics.FEEDBACK_COLUMNS`)."""

    __tablename__ = "unit_outcomes"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    phase_id: Mapped[int] = mapped_column(
        ForeignKey("phases.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Double)
    all_binary: Mapped[bool] = mapped_column(Boolean)


class _CallSlice:
    """The key of a slice of calls (:data:`abplatform.store.rollups.CALL_KEYS`), shared by
    the call rollups: experiment, phase, variant, route, rule, kind, step and app."""

    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    route_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(200), primary_key=True)


class CallTotal(_CallSlice, Base):
    """Rollup: sums of one slice of calls (:data:`abplatform.core.metrics.CALL_COLUMNS`):
    the requests of a route rule (``kind`` "request", per served app and experiment), the
    steps of a pipeline variant ("step") and the shadow calls of a mirroring variant
    ("shadow"). 0 / '' stand for "none" in the keys (a route's request outside any
    experiment has experiment, phase and variant 0; a step has route 0 and rule '')."""

    __tablename__ = "call_totals"

    calls: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    skipped: Mapped[int] = mapped_column(BigInteger)
    successes: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Double)
    billed_s: Mapped[float] = mapped_column(Double)
    cost_usd: Mapped[float] = mapped_column(Double)
    unpriced: Mapped[int] = mapped_column(BigInteger)
    live_errors: Mapped[int] = mapped_column(BigInteger)
    live_successes: Mapped[int] = mapped_column(BigInteger)
    live_latency_ms: Mapped[float] = mapped_column(Double)
    live_cost_usd: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index("ix_call_totals_route", "route_id"),)


class CallLatencyBucket(_CallSlice, Base):
    """Rollup: latency histogram (buckets of :class:`abplatform.core.stats.LatencyBins`)
    of the successful calls of each slice of :class:`CallTotal`."""

    __tablename__ = "call_latency_buckets"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_call_latency_buckets_route", "route_id"),)


class Rollout(Base):
    """A safe rollout of an experiment's treatment (one per experiment): its plan
    (:class:`abplatform.core.rollout.RolloutPlan` as JSON), where it stands (``status``,
    the 0-based ``step``, when it started, the experiment phase numbers of its steps) and
    the controller's last evaluation (``last_action``: kind, code, reason, figures).
    ``version`` guards against two controllers applying one step twice."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), unique=True
    )
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime] = _ts()
    phases: Mapped[list[Any]] = mapped_column(JSONB)
    last_action: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        CheckConstraint(
            "status IN ('ramping', 'paused', 'rolled_back', 'promoted', 'ended')",
            name="status_valid",
        ),
        CheckConstraint("step >= 0", name="step_nonnegative"),
    )


class ControllerLease(Base):
    """Who acts as the rollout controller: at most one holder at a time, until
    ``expires_at`` (the database's clock) unless it renews. ``token`` grows with every
    new holder (a fencing token: a write checks it in its own transaction)."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = _ts()
    renewed_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
