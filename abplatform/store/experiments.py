"""The experiment repository: loading, building, auditing and committing experiments.

The services (:mod:`abplatform.service.experiments`) decide *what* changes under the
lifecycle rules; this module knows *how* it is stored: ORM rows to read models, one
builder for new experiments (created or imported), the audit trail, and commits guarded
by optimistic locking (``experiments.version``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from abplatform.core import assignment, reallocation
from abplatform.core.errors import ConflictError, NotFoundError, StaleWriteError
from abplatform.core.lifecycle import ExperimentStatus
from abplatform.core.routing import RoutingConfig, RoutingVariant, Shadow, Step
from abplatform.core.specs import ReallocationMode
from abplatform.core.views import ExperimentView, PhaseView, VariantView
from abplatform.store.models import AuditEntry, Experiment, Phase, RequestLog, Variant
from abplatform.store.notify import notify_config_changed


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def _duplicate(name: str) -> ConflictError:
    return ConflictError(f"an experiment named '{name}' already exists; names must be unique")


# ----------------------------------------------------------------------------- reads


def load(session: Session, name: str, *, for_update: bool = False) -> Experiment:
    """The experiment ``name`` with its variants and phases (row-locked with ``for_update``).

    Raises:
        NotFoundError: no such experiment (the message lists the known names).
    """
    stmt = (
        sa.select(Experiment)
        .where(Experiment.name == name)
        .options(selectinload(Experiment.variants), selectinload(Experiment.phases))
    )
    if for_update:
        stmt = stmt.with_for_update()
    exp = session.scalars(stmt).one_or_none()
    if exp is None:
        names = session.scalars(sa.select(Experiment.name).order_by(Experiment.name)).all()
        known = ", ".join(names) if names else "none yet"
        raise NotFoundError(f"unknown experiment '{name}'; known experiments: {known}")
    return exp


def load_all(session: Session) -> list[Experiment]:
    """All experiments, newest first."""
    stmt = (
        sa.select(Experiment)
        .options(selectinload(Experiment.variants), selectinload(Experiment.phases))
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
    )
    return list(session.scalars(stmt).all())


def _winner_key(exp: Experiment) -> str | None:
    return next((v.key for v in exp.variants if v.id == exp.winner_variant_id), None)


def to_view(exp: Experiment) -> ExperimentView:
    """The read model of an experiment row (weights and coverage in percent)."""
    phase = exp.phases[-1]
    return ExperimentView(
        id=exp.id,
        name=exp.name,
        description=exp.description,
        status=exp.status,
        hash_seed=exp.hash_seed,
        hash_version=exp.hash_version,
        coverage=exp.coverage * 100.0,
        primary_metric=exp.primary_metric,
        guardrails=tuple(exp.guardrails),
        fallback_to_control=exp.fallback_to_control,
        source=exp.source,
        winner=_winner_key(exp),
        version=exp.version,
        created_at=exp.created_at,
        updated_at=exp.updated_at,
        variants=tuple(
            VariantView(
                id=v.id,
                key=v.key,
                model_version=v.model_version,
                backend_app_id=v.backend_app_id,
                is_control=v.is_control,
                weight=phase.weights[i] * 100.0,
                call_mode=v.call_mode,
                steps=tuple(s["app"] for s in v.steps or ()),
                runner_hint=v.runner_hint,
                shadow_app_id=v.shadow["app"] if v.shadow else None,
                shadow_percent=v.shadow["share"] * 100.0 if v.shadow else 0.0,
                arguments=dict(v.arguments or {}),
            )
            for i, v in enumerate(exp.variants)
        ),
        namespace=_namespace(exp, 100.0),
        phases=tuple(
            PhaseView(
                id=p.id,
                number=p.number,
                weights=tuple(w * 100.0 for w in p.weights),
                hash_seed=p.hash_seed,
                coverage=p.coverage * 100.0,
                reason=p.reason,
                started_at=p.started_at,
                ended_at=p.ended_at,
            )
            for p in exp.phases
        ),
    )


def _namespace(exp: Experiment, scale: float = 1.0) -> tuple[str, float, float] | None:
    if exp.namespace is None or exp.namespace_start is None or exp.namespace_end is None:
        return None
    return (exp.namespace, exp.namespace_start * scale, exp.namespace_end * scale)


def _step(s: dict[str, Any]) -> Step:
    return Step(
        s["app"], s.get("path", ""), dict(s.get("inputs") or {}), dict(s.get("arguments") or {}),
        s.get("call_mode", "run"),
    )  # fmt: skip


def to_routing_variant(v: Variant) -> RoutingVariant:
    """The router's view of a variant row: its calls, hint and shadow."""
    shadow = v.shadow
    return RoutingVariant(
        id=v.id,
        key=v.key,
        model_version=v.model_version,
        backend_app_id=v.backend_app_id,
        is_control=v.is_control,
        call_mode=v.call_mode,
        arguments=dict(v.arguments or {}),
        steps=tuple(_step(s) for s in v.steps or ()),
        runner_hint=v.runner_hint,
        shadow=Shadow(shadow["app"], shadow["share"], shadow.get("call_mode", "run"))
        if shadow
        else None,
    )


def to_routing_config(exp: Experiment) -> RoutingConfig:
    """The router's snapshot of an experiment row (any status; the router decides)."""
    phase = exp.phases[-1]
    winner = next((i for i, v in enumerate(exp.variants) if v.id == exp.winner_variant_id), None)
    return RoutingConfig(
        experiment_id=exp.id,
        name=exp.name,
        status=exp.status,
        version=exp.version,
        phase_id=phase.id,
        hash_seed=phase.hash_seed,
        hash_version=exp.hash_version,
        coverage=phase.coverage,
        allocation=assignment.Allocation.from_json(phase.allocation),
        variants=tuple(to_routing_variant(v) for v in exp.variants),
        winner_index=winner if exp.status == ExperimentStatus.CONCLUDED else None,
        fallback_to_control=exp.fallback_to_control,
        namespace=_namespace(exp),
    )


def routing_config(session: Session, name: str) -> RoutingConfig:
    """The router's snapshot of experiment ``name``.

    Raises:
        NotFoundError: no such experiment.
    """
    return to_routing_config(load(session, name))


def audit_entries(session: Session, experiment_id: int) -> list[dict[str, Any]]:
    """Audit entries of an experiment, oldest first (actor, at, action, before, after)."""
    rows = session.scalars(
        sa.select(AuditEntry)
        .where(AuditEntry.experiment_id == experiment_id)
        .order_by(AuditEntry.id)
    ).all()
    return [
        {"actor": r.actor, "at": r.at, "action": r.action, "before": r.before, "after": r.after}
        for r in rows
    ]


def find_request(session: Session, request_id: str) -> tuple[int, int, str] | None:
    """``(experiment_id, phase_id, unit_id)`` of a logged request, or None if not logged (yet)."""
    row = session.execute(
        sa.select(RequestLog.experiment_id, RequestLog.phase_id, RequestLog.unit_id).where(
            RequestLog.request_id == request_id
        )
    ).one_or_none()
    return (row[0], row[1], row[2]) if row else None


def namespace_slices(session: Session, namespace: str) -> list[tuple[str, str, float, float]]:
    """``(name, status, start, end)`` (fractions) of every experiment in ``namespace``."""
    rows = session.execute(
        sa.select(
            Experiment.name, Experiment.status, Experiment.namespace_start,
            Experiment.namespace_end,
        ).where(Experiment.namespace == namespace)
    ).all()  # fmt: skip
    return [(n, st, float(a), float(b)) for n, st, a, b in rows]


def request_counts(session: Session, experiment_id: int) -> dict[tuple[int, str, str], int]:
    """Logged requests of an experiment by (phase number, served variant key, status).

    A failed request has no served variant: its key is ``"-"``.
    """
    rows = session.execute(
        sa.select(Phase.number, Variant.key, RequestLog.status, sa.func.count())
        .select_from(RequestLog)
        .join(Phase, Phase.id == RequestLog.phase_id)
        .outerjoin(Variant, Variant.id == RequestLog.served_variant_id)
        .where(RequestLog.experiment_id == experiment_id)
        .group_by(Phase.number, Variant.key, RequestLog.status)
    ).all()
    return {(number, key or "-", status): count for number, key, status, count in rows}


# ----------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class NewVariant:
    """A variant of a new experiment (position = order given); ``steps`` and ``shadow``
    as stored (JSON; the shadow's share a fraction)."""

    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    call_mode: str = "run"
    arguments: dict[str, Any] | None = None
    steps: tuple[dict[str, Any], ...] = ()
    runner_hint: str | None = None
    shadow: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewExperiment:
    """Everything a new experiment row needs; weights and coverage are fractions.

    ``started_at`` is the first phase's start (and the experiment's, when given).
    """

    name: str
    description: str
    status: ExperimentStatus
    hash_seed: str
    hash_version: int
    coverage: float
    weights: tuple[float, ...]
    primary_metric: str
    guardrails: tuple[str, ...]
    fallback_to_control: bool
    variants: tuple[NewVariant, ...]
    source: str = "live"
    phase_reason: str = "created"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    namespace: tuple[str, float, float] | None = None


def add_experiment(session: Session, new: NewExperiment) -> Experiment:
    """Insert a new experiment with its variants and first phase (flushed, not committed).

    Raises:
        ConflictError: the name is taken (the session is rolled back).
    """
    if session.scalar(sa.select(Experiment.id).where(Experiment.name == new.name)) is not None:
        raise _duplicate(new.name)
    exp = Experiment(
        name=new.name,
        description=new.description,
        status=new.status.value,
        hash_seed=new.hash_seed,
        hash_version=new.hash_version,
        coverage=new.coverage,
        primary_metric=new.primary_metric,
        guardrails=list(new.guardrails),
        fallback_to_control=new.fallback_to_control,
        source=new.source,
        started_at=new.started_at,
        ended_at=new.ended_at,
        namespace=new.namespace[0] if new.namespace else None,
        namespace_start=new.namespace[1] if new.namespace else None,
        namespace_end=new.namespace[2] if new.namespace else None,
    )
    for i, v in enumerate(new.variants):
        exp.variants.append(
            Variant(
                position=i,
                key=v.key,
                model_version=v.model_version,
                backend_app_id=v.backend_app_id,
                is_control=v.is_control,
                call_mode=v.call_mode,
                arguments=dict(v.arguments or {}),
                steps=list(v.steps),
                runner_hint=v.runner_hint,
                shadow=v.shadow,
            )
        )
    exp.phases.append(
        Phase(
            number=1,
            weights=list(new.weights),
            allocation=assignment.fresh_allocation(new.weights).to_json(),
            hash_seed=new.hash_seed,
            coverage=new.coverage,
            reason=new.phase_reason,
            started_at=new.started_at or now(),
        )
    )
    session.add(exp)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise _duplicate(new.name) from exc
    return exp


def new_allocation(
    phase: Phase, fractions: Sequence[float], mode: ReallocationMode
) -> assignment.Allocation:
    """The allocation of a phase that follows ``phase`` with weights ``fractions``:
    sticky (minimal movement) or fresh (for a new seed)."""
    if mode == "sticky":
        return reallocation.reallocate_sticky(
            assignment.Allocation.from_json(phase.allocation), list(fractions)
        )
    return assignment.fresh_allocation(list(fractions))


def start_phase(
    exp: Experiment,
    fractions: Sequence[float],
    mode: ReallocationMode,
    coverage: float,
    reason: str,
) -> Phase:
    """End the current phase and append the next one (weights and coverage fractions);
    ``rerandomize`` draws a new hash seed for it."""
    old = exp.phases[-1]
    at = now()
    old.ended_at = at
    seed = old.hash_seed
    if mode == "rerandomize":
        seed = f"{exp.hash_seed}/phase-{old.number + 1}-{secrets.token_hex(4)}"
    phase = Phase(
        number=old.number + 1,
        weights=list(fractions),
        allocation=new_allocation(old, fractions, mode).to_json(),
        hash_seed=seed,
        coverage=coverage,
        reason=reason,
        started_at=at,
    )
    exp.phases.append(phase)
    return phase


def snapshot(exp: Experiment) -> dict[str, Any]:
    """JSON-able state for the audit log (weights and coverage as fractions)."""
    phase = exp.phases[-1] if exp.phases else None
    return {
        "status": exp.status,
        "version": exp.version,
        "winner": _winner_key(exp),
        "coverage": exp.coverage,
        "phase": phase.number if phase else None,
        "weights": list(phase.weights) if phase else None,
        "hash_seed": phase.hash_seed if phase else exp.hash_seed,
    }


def check_version(exp: Experiment, expected_version: int | None) -> None:
    """Raise :class:`StaleWriteError` when the caller read an older version."""
    if expected_version is not None and exp.version != expected_version:
        raise StaleWriteError(
            f"experiment '{exp.name}' changed since you read it (you had version "
            f"{expected_version}, it is now {exp.version}); reload and try again"
        )


def finish_write(
    session: Session,
    exp: Experiment,
    *,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    commit: bool = True,
) -> ExperimentView:
    """Flush a write, audit it (before and after), commit with the version check, view it.

    Raises:
        StaleWriteError: someone else changed the experiment during this write.
    """
    session.flush()
    notify_config_changed(session, exp.name)
    session.add(
        AuditEntry(
            experiment_id=exp.id,
            actor=actor,
            action=action,
            before=before,
            after={**snapshot(exp), **(extra or {})},
            at=now(),
        )
    )
    if commit:
        try:
            session.commit()
        except StaleDataError as exc:
            session.rollback()
            raise StaleWriteError(
                f"experiment '{exp.name}' was changed by someone else during this write; "
                "reload and try again"
            ) from exc
    return to_view(exp)


__all__ = [
    "NewExperiment",
    "NewVariant",
    "add_experiment",
    "audit_entries",
    "check_version",
    "find_request",
    "finish_write",
    "load",
    "load_all",
    "namespace_slices",
    "new_allocation",
    "now",
    "request_counts",
    "routing_config",
    "snapshot",
    "start_phase",
    "to_routing_config",
    "to_routing_variant",
    "to_view",
]
