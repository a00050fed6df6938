"""Experiment service: every read and write of experiment configuration.

The CLI, the dashboard and the router call these functions; none of them holds SQL.
Each write runs in one transaction, writes an audit entry, and is guarded by optimistic
locking (``experiments.version``): pass the ``expected_version`` you read, and a write
against a newer version fails with :class:`StaleWriteError` instead of overwriting it.

Units: split weights are **percent** at this interface (each ≥ 0, summing to 100) and
fractions in the database; coverage is percent here (0–100) and a fraction in the database.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from abplatform.core import assignment
from abplatform.settings import get_settings
from abplatform.store.models import (
    AuditEntry,
    Experiment,
    ExperimentStatus,
    Phase,
    RequestLog,
    Variant,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
WEIGHT_SUM_TOLERANCE = 1e-6  # percent points
DEFAULT_GUARDRAILS = ("error_rate", "latency_p95")

ReallocationMode = Literal["sticky", "rerandomize"]


class ServiceError(Exception):
    """Base class: the message says what was wrong and what is allowed."""


class InvalidInputError(ServiceError, ValueError):
    """The request breaks a validation rule; nothing was changed."""


class NotFoundError(ServiceError, LookupError):
    """No experiment (or variant) of that name exists."""


class ConflictError(ServiceError):
    """The write conflicts with existing state (duplicate name, wrong status)."""


class StaleWriteError(ConflictError):
    """The experiment changed since it was read (optimistic locking)."""


# --------------------------------------------------------------------------- inputs


class VariantSpec(BaseModel):
    """One arm of a new experiment."""

    key: str = Field(pattern=KEY_PATTERN, description="Short id, e.g. 'control', 'v2'.")
    model_version: str = Field(min_length=1, max_length=100)
    backend_app_id: str = Field(min_length=3, max_length=200, description="fal app id")
    is_control: bool = False


class ExperimentSpec(BaseModel):
    """Everything needed to create an experiment. Weights and coverage in percent."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    variants: list[VariantSpec]
    weights: list[float] | None = Field(
        default=None, description="Percent per variant, same order; default equal split."
    )
    coverage: float = Field(default=100.0, description="Percent of units enrolled (0–100).")
    primary_metric: str = Field(default="error_rate", min_length=1, max_length=100)
    guardrails: list[str] = Field(default_factory=lambda: list(DEFAULT_GUARDRAILS))
    hash_seed: str | None = Field(default=None, description="Default: random.")
    hash_version: int = 2
    fallback_to_control: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return v.strip()


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class VariantView:
    """A variant as stored. ``weight`` is the current phase's share in percent."""

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    weight: float


@dataclass(frozen=True)
class PhaseView:
    """A phase: its number, weights in percent, seed, coverage (percent) and time span."""

    id: int
    number: int
    weights: tuple[float, ...]
    hash_seed: str
    coverage: float
    reason: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ExperimentView:
    """An experiment with its variants and phases (current phase last)."""

    id: int
    name: str
    description: str
    status: str
    hash_seed: str
    hash_version: int
    coverage: float
    primary_metric: str
    guardrails: tuple[str, ...]
    fallback_to_control: bool
    source: str
    winner: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    variants: tuple[VariantView, ...]
    phases: tuple[PhaseView, ...]

    @property
    def current_phase(self) -> PhaseView:
        """The newest phase."""
        return self.phases[-1]

    @property
    def control(self) -> VariantView:
        """The control variant."""
        return next(v for v in self.variants if v.is_control)

    def variant(self, key: str) -> VariantView:
        """The variant with ``key``; :class:`NotFoundError` lists the allowed keys."""
        for v in self.variants:
            if v.key == key:
                return v
        allowed = ", ".join(v.key for v in self.variants)
        raise NotFoundError(f"experiment '{self.name}' has no variant '{key}'; variants: {allowed}")


@dataclass(frozen=True)
class RoutingVariant:
    """What the router needs to call one variant."""

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool


@dataclass(frozen=True)
class RoutingConfig:
    """A snapshot of one experiment for the router: assignment inputs and backends.

    ``winner_index`` is set when the experiment is concluded: every request goes there.
    ``allocation`` is in hash space [0, 1) (see :mod:`abplatform.core.assignment`).
    """

    experiment_id: int
    name: str
    status: str
    version: int
    phase_id: int
    hash_seed: str
    hash_version: int
    coverage: float
    allocation: assignment.Allocation
    variants: tuple[RoutingVariant, ...]
    winner_index: int | None
    fallback_to_control: bool

    @functools.cached_property
    def enrolled_ranges(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Per variant, the hash ranges enrolled at this coverage (computed once per config)."""
        return assignment.covered_intervals(self.allocation, self.coverage)

    @property
    def control_index(self) -> int:
        """Index of the control variant."""
        return next(i for i, v in enumerate(self.variants) if v.is_control)


@dataclass(frozen=True)
class WeightChangePreview:
    """Effect of a weight change: the fraction (0–1) of the hash space that changes variant."""

    mode: str
    old_weights: tuple[float, ...]
    new_weights: tuple[float, ...]
    moved_fraction: float


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _load(session: Session, name: str, *, for_update: bool = False) -> Experiment:
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


def _view(exp: Experiment) -> ExperimentView:
    phase = exp.phases[-1]
    winner = next((v.key for v in exp.variants if v.id == exp.winner_variant_id), None)
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
        winner=winner,
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
            )
            for i, v in enumerate(exp.variants)
        ),
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


def _snapshot(exp: Experiment) -> dict[str, Any]:
    """JSON-able state for the audit log."""
    phase = exp.phases[-1] if exp.phases else None
    winner = next((v.key for v in exp.variants if v.id == exp.winner_variant_id), None)
    return {
        "status": exp.status,
        "version": exp.version,
        "winner": winner,
        "coverage": exp.coverage,
        "phase": phase.number if phase else None,
        "weights": list(phase.weights) if phase else None,
        "hash_seed": phase.hash_seed if phase else exp.hash_seed,
    }


def _audit(session: Session, exp: Experiment | None, actor: str, action: str, before, after):
    session.add(
        AuditEntry(
            experiment_id=exp.id if exp is not None else None,
            actor=actor,
            action=action,
            before=before,
            after=after,
            at=_now(),
        )
    )


def _check_version(exp: Experiment, expected_version: int | None) -> None:
    if expected_version is not None and exp.version != expected_version:
        raise StaleWriteError(
            f"experiment '{exp.name}' changed since you read it (you had version "
            f"{expected_version}, it is now {exp.version}); reload and try again"
        )


def _commit(session: Session, exp: Experiment) -> None:
    try:
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise StaleWriteError(
            f"experiment '{exp.name}' was changed by someone else during this write; "
            "reload and try again"
        ) from exc


def validate_weights_percent(weights: Sequence[float], n_variants: int) -> list[float]:
    """Check percent weights and return them as fractions.

    Rules: exactly one weight per variant, each finite and ≥ 0, summing to 100 (±1e-6).

    Raises:
        InvalidInputError: a rule is broken; the message names it and the allowed values.
    """
    weights = list(weights)
    if len(weights) != n_variants:
        raise InvalidInputError(
            f"got {len(weights)} weights for {n_variants} variants; give exactly one weight "
            "per variant, in percent, summing to 100"
        )
    for i, w in enumerate(weights):
        if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InvalidInputError(
                f"weight #{i + 1} is {w!r}; each weight must be a number ≥ 0 (percent)"
            )
    total = sum(weights)
    if abs(total - 100.0) > WEIGHT_SUM_TOLERANCE:
        raise InvalidInputError(
            f"weights sum to {total:g}%, they must sum to 100% (e.g. 50,50 or 80,20)"
        )
    return [w / 100.0 for w in weights]


def _validate_coverage(coverage: float) -> float:
    if not math.isfinite(coverage) or not 0 <= coverage <= 100:
        raise InvalidInputError(f"coverage is {coverage!r}; it must be a percent in [0, 100]")
    return coverage / 100.0


def _validate_spec(spec: ExperimentSpec) -> tuple[list[float], float]:
    n = len(spec.variants)
    if n < 2:
        raise InvalidInputError(f"an experiment needs at least 2 variants, got {n}")
    keys = [v.key for v in spec.variants]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InvalidInputError(f"variant keys must be unique; repeated: {', '.join(dupes)}")
    controls = [v.key for v in spec.variants if v.is_control]
    if len(controls) != 1:
        raise InvalidInputError(
            f"exactly one variant must be the control, got {len(controls)}"
            + (f" ({', '.join(controls)})" if controls else "")
        )
    known = get_settings().known_backend_apps
    for v in spec.variants:
        if v.backend_app_id not in known:
            raise InvalidInputError(
                f"variant '{v.key}' uses unknown backend app id '{v.backend_app_id}'; "
                f"known: {', '.join(known)} (set ABPLATFORM_BACKEND_APPS to add more)"
            )
    if spec.hash_version not in (1, 2):
        raise InvalidInputError(f"hash_version is {spec.hash_version}; allowed: 1 or 2")
    weights = spec.weights if spec.weights is not None else [100.0 / n] * n
    if spec.weights is None:
        weights[-1] = 100.0 - sum(weights[:-1])
    fractions = validate_weights_percent(weights, n)
    return fractions, _validate_coverage(spec.coverage)


# --------------------------------------------------------------------------- reads


def list_experiments(session: Session) -> list[ExperimentView]:
    """All experiments, newest first."""
    stmt = (
        sa.select(Experiment)
        .options(selectinload(Experiment.variants), selectinload(Experiment.phases))
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
    )
    return [_view(e) for e in session.scalars(stmt).all()]


def get_experiment(session: Session, name: str) -> ExperimentView:
    """One experiment by name. Raises :class:`NotFoundError` (listing known names)."""
    return _view(_load(session, name))


def audit_log(session: Session, name: str) -> list[dict[str, Any]]:
    """The experiment's audit entries, oldest first, as dicts (actor, at, action, before, after)."""
    exp = _load(session, name)
    rows = session.scalars(
        sa.select(AuditEntry).where(AuditEntry.experiment_id == exp.id).order_by(AuditEntry.id)
    ).all()
    return [
        {"actor": r.actor, "at": r.at, "action": r.action, "before": r.before, "after": r.after}
        for r in rows
    ]


def routing_config(session: Session, name: str) -> RoutingConfig:
    """The router's snapshot of experiment ``name`` (any status; the router decides)."""
    exp = _load(session, name)
    phase = exp.phases[-1]
    variants = tuple(
        RoutingVariant(
            id=v.id,
            key=v.key,
            model_version=v.model_version,
            backend_app_id=v.backend_app_id,
            is_control=v.is_control,
        )
        for v in exp.variants
    )
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
        variants=variants,
        winner_index=winner if exp.status == ExperimentStatus.CONCLUDED else None,
        fallback_to_control=exp.fallback_to_control,
    )


def find_request(session: Session, request_id: str) -> tuple[int, int, str] | None:
    """``(experiment_id, phase_id, unit_id)`` of a logged request, or None if not logged (yet)."""
    row = session.execute(
        sa.select(RequestLog.experiment_id, RequestLog.phase_id, RequestLog.unit_id).where(
            RequestLog.request_id == request_id
        )
    ).one_or_none()
    return (row[0], row[1], row[2]) if row else None


def request_counts(session: Session, name: str) -> dict[tuple[int, str, str], int]:
    """Logged requests of an experiment by (phase number, served variant key, status).

    A failed request has no served variant: its key is ``"-"``.
    """
    exp = _load(session, name)
    rows = session.execute(
        sa.select(Phase.number, Variant.key, RequestLog.status, sa.func.count())
        .select_from(RequestLog)
        .join(Phase, Phase.id == RequestLog.phase_id)
        .outerjoin(Variant, Variant.id == RequestLog.served_variant_id)
        .where(RequestLog.experiment_id == exp.id)
        .group_by(Phase.number, Variant.key, RequestLog.status)
    ).all()
    return {(number, key or "-", status): count for number, key, status, count in rows}


# --------------------------------------------------------------------------- writes


def create_experiment(session: Session, spec: ExperimentSpec, *, actor: str) -> ExperimentView:
    """Create an experiment in status ``draft`` with its first phase.

    Raises:
        InvalidInputError: fewer than 2 variants, not exactly one control, duplicate keys,
            unknown backend app id, bad weights (one per variant, ≥ 0, sum 100) or coverage.
        ConflictError: an experiment with this name exists.
    """
    fractions, coverage = _validate_spec(spec)
    if session.scalar(sa.select(Experiment.id).where(Experiment.name == spec.name)) is not None:
        raise ConflictError(
            f"an experiment named '{spec.name}' already exists; names must be unique"
        )
    seed = spec.hash_seed or secrets.token_hex(8)
    exp = Experiment(
        name=spec.name,
        description=spec.description,
        status=ExperimentStatus.DRAFT.value,
        hash_seed=seed,
        hash_version=spec.hash_version,
        coverage=coverage,
        primary_metric=spec.primary_metric,
        guardrails=list(spec.guardrails),
        fallback_to_control=spec.fallback_to_control,
    )
    for i, v in enumerate(spec.variants):
        exp.variants.append(
            Variant(
                position=i,
                key=v.key,
                model_version=v.model_version,
                backend_app_id=v.backend_app_id,
                is_control=v.is_control,
            )
        )
    exp.phases.append(
        Phase(
            number=1,
            weights=fractions,
            allocation=assignment.fresh_allocation(fractions).to_json(),
            hash_seed=seed,
            coverage=coverage,
            reason="created",
            started_at=_now(),
        )
    )
    session.add(exp)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(
            f"an experiment named '{spec.name}' already exists; names must be unique"
        ) from exc
    _audit(session, exp, actor, "create", None, {**spec.model_dump(), **_snapshot(exp)})
    _commit(session, exp)
    return _view(exp)


def create_imported_experiment(
    session: Session,
    name: str,
    variant_values: Sequence[str],
    control_value: str,
    *,
    weights: Sequence[float] | None,
    primary_metric: str,
    actor: str,
    description: str = "",
) -> ExperimentView:
    """Create a concluded experiment (``source="import"``) to hold historical per-unit data.

    Variants are keyed by the values of the imported variant column; ``weights`` (percent,
    default equal) are the intended split, used by the SRM check. The one phase starts at
    the Unix epoch so that imported outcomes, stamped at import time, fall inside it.

    Raises:
        InvalidInputError: fewer than two variants, control not among them, bad weights.
        ConflictError: the name exists.
    """
    values = list(variant_values)
    if control_value not in values:
        raise InvalidInputError(
            f"control value '{control_value}' is not a value of the variant column; "
            f"values: {', '.join(values)}"
        )
    if len(values) < 2:
        raise InvalidInputError(f"an experiment needs at least 2 variants, got {len(values)}")
    if not re.match(NAME_PATTERN, name):
        raise InvalidInputError(
            f"experiment name '{name}' is invalid: use lowercase letters, digits, '.', '_', '-'"
        )
    n = len(values)
    fractions = validate_weights_percent(weights if weights else [100.0 / n] * n, n)
    if session.scalar(sa.select(Experiment.id).where(Experiment.name == name)) is not None:
        raise ConflictError(f"an experiment named '{name}' already exists; names must be unique")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    exp = Experiment(
        name=name,
        description=description,
        status=ExperimentStatus.CONCLUDED.value,
        hash_seed="import",
        hash_version=2,
        coverage=1.0,
        primary_metric=primary_metric,
        guardrails=[],
        fallback_to_control=False,
        source="import",
        started_at=epoch,
        ended_at=_now(),
    )
    for i, value in enumerate(values):
        exp.variants.append(
            Variant(
                position=i,
                key=value,
                model_version=value,
                backend_app_id="import",
                is_control=value == control_value,
            )
        )
    exp.phases.append(
        Phase(
            number=1,
            weights=fractions,
            allocation=assignment.fresh_allocation(fractions).to_json(),
            hash_seed="import",
            coverage=1.0,
            reason="imported",
            started_at=epoch,
        )
    )
    session.add(exp)
    session.flush()
    _audit(session, exp, actor, "import", None, _snapshot(exp))
    return _view(exp)


def _transition(
    session: Session,
    name: str,
    *,
    actor: str,
    action: str,
    allowed_from: tuple[ExperimentStatus, ...],
    expected_version: int | None,
) -> Experiment:
    exp = _load(session, name, for_update=True)
    _check_version(exp, expected_version)
    if exp.status not in allowed_from:
        allowed = " or ".join(s.value for s in allowed_from)
        raise ConflictError(
            f"cannot {action} experiment '{name}': it is {exp.status}, and this is allowed "
            f"only when it is {allowed}"
        )
    return exp


def _finish(
    session: Session,
    exp: Experiment,
    *,
    actor: str,
    action: str,
    before: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> ExperimentView:
    """Flush a write, audit it (before and after), commit with the version check, view it."""
    session.flush()
    _audit(session, exp, actor, action, before, {**_snapshot(exp), **(extra or {})})
    _commit(session, exp)
    return _view(exp)


def start_experiment(
    session: Session, name: str, *, actor: str, expected_version: int | None = None
) -> ExperimentView:
    """Move a draft experiment to ``running``; the router starts serving it."""
    exp = _transition(
        session,
        name,
        actor=actor,
        action="start",
        allowed_from=(ExperimentStatus.DRAFT,),
        expected_version=expected_version,
    )
    before = _snapshot(exp)
    now = _now()
    exp.status = ExperimentStatus.RUNNING.value
    exp.started_at = now
    exp.phases[-1].started_at = now
    return _finish(session, exp, actor=actor, action="start", before=before)


def _new_allocation(
    phase: Phase, fractions: list[float], mode: ReallocationMode
) -> assignment.Allocation:
    if mode == "sticky":
        return assignment.reallocate_sticky(
            assignment.Allocation.from_json(phase.allocation), fractions
        )
    return assignment.fresh_allocation(fractions)


def preview_weight_change(
    session: Session, name: str, weights: Sequence[float], mode: ReallocationMode = "sticky"
) -> WeightChangePreview:
    """Fraction (0–1) of units that would change variant under new percent ``weights``.

    Sticky mode moves the minimum, half the L1 distance between old and new shares;
    re-randomize draws a new seed, so about ``1 - Σ old_i·new_i`` of units move.
    Changes nothing. Raises :class:`InvalidInputError` for invalid weights.
    """
    exp = _load(session, name)
    fractions = validate_weights_percent(weights, len(exp.variants))
    phase = exp.phases[-1]
    old = assignment.Allocation.from_json(phase.allocation)
    if mode == "sticky":
        moved = assignment.moved_fraction(old, _new_allocation(phase, fractions, mode))
    else:
        moved = 1.0 - sum(a * b for a, b in zip(phase.weights, fractions, strict=True))
    return WeightChangePreview(
        mode=mode,
        old_weights=tuple(w * 100 for w in phase.weights),
        new_weights=tuple(w * 100 for w in fractions),
        moved_fraction=moved,
    )


def _start_phase(
    exp: Experiment, fractions: list[float], mode: ReallocationMode, coverage: float, reason: str
) -> None:
    old = exp.phases[-1]
    now = _now()
    old.ended_at = now
    seed = old.hash_seed
    if mode == "rerandomize":
        seed = f"{exp.hash_seed}/phase-{old.number + 1}-{secrets.token_hex(4)}"
    exp.phases.append(
        Phase(
            number=old.number + 1,
            weights=fractions,
            allocation=_new_allocation(old, fractions, mode).to_json(),
            hash_seed=seed,
            coverage=coverage,
            reason=reason,
            started_at=now,
        )
    )


def set_weights(
    session: Session,
    name: str,
    weights: Sequence[float],
    *,
    actor: str,
    mode: ReallocationMode = "sticky",
    coverage: float | None = None,
    expected_version: int | None = None,
) -> ExperimentView:
    """Change split weights (percent) and optionally coverage (percent): starts a new phase.

    ``mode="sticky"`` keeps assignments with minimal movement; ``"rerandomize"`` draws a
    new hash seed for the new phase. Allowed for draft and running experiments.

    Raises:
        InvalidInputError: bad weights/coverage/mode. NotFoundError: unknown experiment.
        ConflictError: the experiment is stopped or concluded. StaleWriteError: stale version.
    """
    if mode not in ("sticky", "rerandomize"):
        raise InvalidInputError(f"mode is {mode!r}; allowed: sticky, rerandomize")
    exp = _transition(
        session,
        name,
        actor=actor,
        action="change weights of",
        allowed_from=(ExperimentStatus.DRAFT, ExperimentStatus.RUNNING),
        expected_version=expected_version,
    )
    fractions = validate_weights_percent(weights, len(exp.variants))
    new_cov = exp.coverage if coverage is None else _validate_coverage(coverage)
    current = exp.phases[-1]
    unchanged = all(abs(a - b) < 1e-12 for a, b in zip(current.weights, fractions, strict=True))
    if mode == "sticky" and unchanged and abs(new_cov - exp.coverage) < 1e-12:
        shown = "/".join(f"{w * 100:g}" for w in fractions)
        raise InvalidInputError(
            f"weights are already {shown} at coverage {exp.coverage * 100:g}%; nothing to "
            "change (a new phase would restart the analysis). Use rerandomize for a new seed."
        )
    before = _snapshot(exp)
    _start_phase(exp, fractions, mode, new_cov, reason=f"weights changed ({mode})")
    exp.coverage = new_cov
    exp.updated_at = _now()
    return _finish(
        session, exp, actor=actor, action="set_weights", before=before, extra={"mode": mode}
    )


def promote(
    session: Session,
    name: str,
    variant_key: str,
    *,
    actor: str,
    expected_version: int | None = None,
) -> ExperimentView:
    """Declare ``variant_key`` the winner: it gets 100%, the experiment becomes concluded.

    The router then sends every request to the winner's backend. Promoting the control is
    the roll-back. Allowed for running (and draft) experiments.
    """
    exp = _transition(
        session,
        name,
        actor=actor,
        action="promote a winner of",
        allowed_from=(ExperimentStatus.DRAFT, ExperimentStatus.RUNNING),
        expected_version=expected_version,
    )
    index = next((i for i, v in enumerate(exp.variants) if v.key == variant_key), None)
    if index is None:
        allowed = ", ".join(v.key for v in exp.variants)
        raise InvalidInputError(
            f"experiment '{name}' has no variant '{variant_key}'; variants: {allowed}"
        )
    before = _snapshot(exp)
    fractions = [0.0] * len(exp.variants)
    fractions[index] = 1.0
    _start_phase(exp, fractions, "sticky", 1.0, reason=f"promoted {variant_key}")
    exp.coverage = 1.0
    exp.winner_variant_id = exp.variants[index].id
    exp.status = ExperimentStatus.CONCLUDED.value
    exp.ended_at = _now()
    return _finish(session, exp, actor=actor, action="promote", before=before)


def stop_experiment(
    session: Session, name: str, *, actor: str, expected_version: int | None = None
) -> ExperimentView:
    """Stop an experiment: the router refuses further requests for it (4xx).

    To keep serving while ending the test, promote a variant instead (promoting the
    control is the roll-back).
    """
    exp = _transition(
        session,
        name,
        actor=actor,
        action="stop",
        allowed_from=(ExperimentStatus.DRAFT, ExperimentStatus.RUNNING),
        expected_version=expected_version,
    )
    before = _snapshot(exp)
    now = _now()
    exp.status = ExperimentStatus.STOPPED.value
    exp.ended_at = now
    exp.phases[-1].ended_at = now
    return _finish(session, exp, actor=actor, action="stop", before=before)


def as_dict(view: ExperimentView) -> dict[str, Any]:
    """A JSON-friendly dict of an :class:`ExperimentView`."""
    return asdict(view)


__all__ = [
    "KEY_PATTERN",
    "NAME_PATTERN",
    "ConflictError",
    "ExperimentSpec",
    "ExperimentView",
    "InvalidInputError",
    "NotFoundError",
    "RoutingConfig",
    "ServiceError",
    "StaleWriteError",
    "VariantSpec",
    "audit_log",
    "create_experiment",
    "create_imported_experiment",
    "find_request",
    "get_experiment",
    "list_experiments",
    "preview_weight_change",
    "promote",
    "request_counts",
    "routing_config",
    "set_weights",
    "start_experiment",
    "stop_experiment",
    "validate_weights_percent",
]
