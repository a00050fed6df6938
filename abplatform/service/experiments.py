"""Experiment commands and reads: every change an operator (or the system) makes.

The CLI, the dashboard and the demo call these functions. Each command checks its
inputs (:mod:`abplatform.core.specs`) and the lifecycle rule
(:mod:`abplatform.core.lifecycle`), then writes through the repository
(:mod:`abplatform.store.experiments`) in one transaction with an audit entry. Optimistic
locking: pass the ``expected_version`` you read, and a write against a newer version fails
with :class:`StaleWriteError` instead of overwriting it.

Units: split weights and coverage are **percent** at this interface (each weight ≥ 0,
summing to 100; coverage 0–100) and fractions in the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from abplatform.core import assignment, reallocation
from abplatform.core.errors import ConflictError, InvalidInputError
from abplatform.core.lifecycle import Command, ExperimentStatus, check_transition
from abplatform.core.specs import (
    ExperimentSpec,
    ReallocationMode,
    VariantSpec,
    check_name,
    equal_weights_percent,
    validate_coverage,
    validate_mode,
    validate_spec,
    validate_weights_percent,
)
from abplatform.core.views import ExperimentView, WeightChangePreview
from abplatform.settings import get_settings
from abplatform.store import experiments as repo
from abplatform.store.models import Experiment


@dataclass(frozen=True)
class AuditNote:
    """How a command made on behalf of another one is audited: the audit ``action``
    (None: the command's own name), ``extra`` fields of the entry (e.g. the figures that
    justified a rollout's step), the new phase's ``phase_reason`` (None: the command's
    own), and whether to ``commit`` (False: the caller commits its other writes with it)."""

    action: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    phase_reason: str | None = None
    commit: bool = True


# ----------------------------------------------------------------------------- reads


def list_experiments(session: Session) -> list[ExperimentView]:
    """All experiments, newest first."""
    return [repo.to_view(e) for e in repo.load_all(session)]


def get_experiment(session: Session, name: str) -> ExperimentView:
    """One experiment by name. Raises :class:`NotFoundError` (listing known names)."""
    return repo.to_view(repo.load(session, name))


def audit_log(session: Session, name: str) -> list[dict[str, Any]]:
    """The experiment's audit entries, oldest first, as dicts (actor, at, action, before, after)."""
    return repo.audit_entries(session, repo.load(session, name).id)


def request_counts(session: Session, name: str) -> dict[tuple[int, str, str], int]:
    """Logged requests of an experiment by (phase number, served variant key, status).

    A failed request has no served variant: its key is ``"-"``.
    """
    return repo.request_counts(session, repo.load(session, name).id)


def as_dict(view: ExperimentView) -> dict[str, Any]:
    """A JSON-friendly dict of an :class:`ExperimentView`."""
    return asdict(view)


# ----------------------------------------------------------------------------- creation


def create_experiment(session: Session, spec: ExperimentSpec, *, actor: str) -> ExperimentView:
    """Create an experiment in status ``draft`` with its first phase.

    Raises:
        InvalidInputError: fewer than 2 variants, not exactly one control, duplicate keys,
            unknown backend app id (steps and shadows included), bad weights (one per
            variant, ≥ 0, sum 100) or coverage, a bad pipeline, runner hint or shadow.
        ConflictError: an experiment with this name exists, or its namespace slice
            overlaps the slice of another experiment in the namespace that is not stopped
            (a unit could be in both).
    """
    valid = validate_spec(spec, get_settings().known_backend_apps)
    namespace = _check_namespace(session, spec)
    seed = spec.hash_seed or secrets.token_hex(8)
    exp = repo.add_experiment(
        session,
        repo.NewExperiment(
            name=spec.name,
            description=spec.description,
            status=ExperimentStatus.DRAFT,
            hash_seed=seed,
            hash_version=spec.hash_version,
            coverage=valid.coverage,
            weights=valid.weights,
            primary_metric=spec.primary_metric,
            guardrails=tuple(spec.guardrails),
            fallback_to_control=spec.fallback_to_control,
            variants=tuple(_new_variant(v) for v in spec.variants),
            namespace=namespace,
        ),
    )
    requested = {
        k: v for k, v in spec.model_dump().items() if k not in ("coverage", "weights", "hash_seed")
    }
    return repo.finish_write(
        session, exp, actor=actor, action="create", before=None, extra=requested
    )


def _new_variant(v: VariantSpec) -> repo.NewVariant:
    shadow = None
    if v.shadow is not None:
        shadow = {"app": v.shadow.app, "share": v.shadow.percent / 100.0,
                  "call_mode": v.shadow.call_mode}  # fmt: skip
    return repo.NewVariant(
        v.key, v.model_version, v.backend_app_id, v.is_control, v.call_mode,
        arguments=dict(v.arguments), steps=tuple(s.model_dump() for s in v.steps),
        runner_hint=v.runner_hint, shadow=shadow,
    )  # fmt: skip


def _check_namespace(session: Session, spec: ExperimentSpec) -> tuple[str, float, float] | None:
    """The spec's namespace slice as fractions, if it overlaps no other experiment's."""
    ns = spec.namespace
    if ns is None:
        return None
    start, end = ns.start / 100.0, ns.end / 100.0
    for name, status, a, b in repo.namespace_slices(session, ns.name):
        if status != ExperimentStatus.STOPPED and a < end and start < b:
            raise ConflictError(
                f"namespace {ns.name} {ns.start:g}-{ns.end:g}% overlaps experiment '{name}' "
                f"({a * 100:g}-{b * 100:g}%); experiments in one namespace take disjoint "
                "slices, so that a unit is in at most one of them"
            )
    return (ns.name, start, end)


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
    """Create a concluded experiment (``source="import"``) to hold historical per-unit data
    (not committed: the importer writes the data in the same transaction).

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
    name = check_name(name)
    n = len(values)
    fractions = validate_weights_percent(weights if weights else equal_weights_percent(n), n)
    exp = repo.add_experiment(
        session,
        repo.NewExperiment(
            name=name,
            description=description,
            status=ExperimentStatus.CONCLUDED,
            hash_seed="import",
            hash_version=2,
            coverage=1.0,
            weights=tuple(fractions),
            primary_metric=primary_metric,
            guardrails=(),
            fallback_to_control=False,
            variants=tuple(
                repo.NewVariant(value, value, "import", value == control_value) for value in values
            ),
            source="import",
            phase_reason="imported",
            started_at=datetime(1970, 1, 1, tzinfo=UTC),
            ended_at=repo.now(),
        ),
    )
    return repo.finish_write(session, exp, actor=actor, action="import", before=None, commit=False)


# ----------------------------------------------------------------------------- lifecycle


def _begin(
    session: Session, name: str, command: Command, expected_version: int | None
) -> tuple[Experiment, ExperimentStatus, dict[str, Any]]:
    """Lock the experiment, check version and lifecycle rule; return it, the state the
    command leads to, and its audit snapshot before the change."""
    exp = repo.load(session, name, for_update=True)
    repo.check_version(exp, expected_version)
    target = check_transition(name, exp.status, command)
    return exp, target, repo.snapshot(exp)


def start_experiment(
    session: Session, name: str, *, actor: str, expected_version: int | None = None,
    commit: bool = True,
) -> ExperimentView:  # fmt: skip
    """Move a draft experiment to ``running``; the router starts serving it (``commit``
    False: leave the transaction open for the caller's other writes)."""
    exp, target, before = _begin(session, name, Command.START, expected_version)
    at = repo.now()
    exp.status = target.value
    exp.started_at = at
    exp.phases[-1].started_at = at
    return repo.finish_write(
        session, exp, actor=actor, action="start", before=before, commit=commit
    )


def _check_weight_change(
    exp: Experiment, weights: Sequence[float], mode: str, coverage: float | None
) -> tuple[ReallocationMode, list[float], float]:
    """Every rule a weight change must pass (the preview applies them too, so it never
    previews a change that would then be refused): ``(mode, fractions, coverage)``.

    Raises:
        InvalidInputError: bad mode, weights or coverage, or nothing would change.
            ConflictError: the experiment's weights cannot change in its state.
    """
    checked_mode = validate_mode(mode)
    check_transition(exp.name, exp.status, Command.SET_WEIGHTS)
    fractions = validate_weights_percent(weights, len(exp.variants))
    new_cov = exp.coverage if coverage is None else validate_coverage(coverage)
    current = exp.phases[-1]
    unchanged = all(abs(a - b) < 1e-12 for a, b in zip(current.weights, fractions, strict=True))
    if checked_mode == "sticky" and unchanged and abs(new_cov - exp.coverage) < 1e-12:
        shown = "/".join(f"{w * 100:g}" for w in fractions)
        raise InvalidInputError(
            f"weights are already {shown} at coverage {exp.coverage * 100:g}%; nothing to "
            "change (a new phase would restart the analysis). Use rerandomize for a new seed."
        )
    return checked_mode, fractions, new_cov


def preview_weight_change(
    session: Session,
    name: str,
    weights: Sequence[float],
    mode: ReallocationMode = "sticky",
    coverage: float | None = None,
) -> WeightChangePreview:
    """Fraction (0–1) of units that would change variant under new percent ``weights``
    (and ``coverage``, percent, unchanged when None).

    Sticky mode moves the minimum, half the L1 distance between old and new shares;
    re-randomize draws a new seed, so about ``1 - Σ old_i·new_i`` of units move.
    Changes nothing; refuses exactly what :func:`set_weights` would refuse.

    Raises:
        InvalidInputError: invalid weights, coverage or mode, or no change. ConflictError:
            the experiment's weights cannot change in its state.
    """
    exp = repo.load(session, name)
    mode, fractions, _ = _check_weight_change(exp, weights, mode, coverage)
    phase = exp.phases[-1]
    old = assignment.Allocation.from_json(phase.allocation)
    if mode == "sticky":
        moved = reallocation.moved_fraction(old, repo.new_allocation(phase, fractions, mode))
    else:
        moved = 1.0 - sum(a * b for a, b in zip(phase.weights, fractions, strict=True))
    return WeightChangePreview(
        mode=mode,
        old_weights=tuple(w * 100 for w in phase.weights),
        new_weights=tuple(w * 100 for w in fractions),
        moved_fraction=moved,
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
    audit: AuditNote | None = None,
) -> ExperimentView:
    """Change split weights (percent) and optionally coverage (percent): starts a new phase.

    ``mode="sticky"`` keeps assignments with minimal movement; ``"rerandomize"`` draws a
    new hash seed for the new phase. Allowed for draft and running experiments. ``audit``
    names the action in the audit log, adds fields to its entry and may leave the
    transaction open (a rollout's step: see :class:`AuditNote`).

    Raises:
        InvalidInputError: bad weights/coverage/mode, or no change. NotFoundError: unknown
            experiment. ConflictError: the experiment is stopped or concluded.
            StaleWriteError: stale version.
    """
    exp, _, before = _begin(session, name, Command.SET_WEIGHTS, expected_version)
    mode, fractions, new_cov = _check_weight_change(exp, weights, mode, coverage)
    note = audit or AuditNote()
    reason = note.phase_reason or f"weights changed ({mode})"
    repo.start_phase(exp, fractions, mode, new_cov, reason=reason)
    exp.coverage = new_cov
    exp.updated_at = repo.now()
    return repo.finish_write(
        session, exp, actor=actor, action=note.action or "set_weights", before=before,
        extra={"mode": mode, **note.extra}, commit=note.commit,
    )  # fmt: skip


def promote(
    session: Session,
    name: str,
    variant_key: str,
    *,
    actor: str,
    expected_version: int | None = None,
    audit: AuditNote | None = None,
) -> ExperimentView:
    """Declare ``variant_key`` the winner: it gets 100%, the experiment becomes concluded.

    The router then sends every request to the winner's backend. Promoting the control is
    the roll-back. Allowed for running (and draft) experiments. ``audit``: see
    :func:`set_weights`.
    """
    exp, target, before = _begin(session, name, Command.PROMOTE, expected_version)
    index = next((i for i, v in enumerate(exp.variants) if v.key == variant_key), None)
    if index is None:
        allowed = ", ".join(v.key for v in exp.variants)
        raise InvalidInputError(
            f"experiment '{name}' has no variant '{variant_key}'; variants: {allowed}"
        )
    fractions = [0.0] * len(exp.variants)
    fractions[index] = 1.0
    note = audit or AuditNote()
    reason = note.phase_reason or f"promoted {variant_key}"
    repo.start_phase(exp, fractions, "sticky", 1.0, reason=reason)
    exp.coverage = 1.0
    exp.winner_variant_id = exp.variants[index].id
    exp.status = target.value
    exp.ended_at = repo.now()
    return repo.finish_write(
        session, exp, actor=actor, action=note.action or "promote", before=before,
        extra=dict(note.extra), commit=note.commit,
    )  # fmt: skip


def stop_experiment(
    session: Session, name: str, *, actor: str, expected_version: int | None = None
) -> ExperimentView:
    """Stop an experiment: the router refuses further requests for it (4xx).

    To keep serving while ending the test, promote a variant instead (promoting the
    control is the roll-back).
    """
    exp, target, before = _begin(session, name, Command.STOP, expected_version)
    at = repo.now()
    exp.status = target.value
    exp.ended_at = at
    exp.phases[-1].ended_at = at
    return repo.finish_write(session, exp, actor=actor, action="stop", before=before)


__all__ = [
    "AuditNote",
    "as_dict",
    "audit_log",
    "create_experiment",
    "create_imported_experiment",
    "get_experiment",
    "list_experiments",
    "preview_weight_change",
    "promote",
    "request_counts",
    "set_weights",
    "start_experiment",
    "stop_experiment",
]
