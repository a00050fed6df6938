"""Safe rollouts: commands (create, pause, resume, override), reads, and one controller
step (evaluate a rollout, then apply its action or record the hold).

Every change goes through the experiment commands (:mod:`abplatform.service.experiments`)
in one transaction with the rollout row and an audit entry that carries the figures that
justified it. Two guards keep a step from being applied twice: the rollout row's version
(and the experiment's) read at evaluation time must still be current when the action is
applied, under row locks; and the controller proves in the same transaction that it still
holds the lease (:func:`abplatform.store.rollouts.check_lease`).

**A roll-back promotes the control** (the experiment is concluded with the control as
its winner, and the control serves 100%) rather than stopping the experiment: a stopped
experiment makes the router answer 409, which would cut off every caller of the
experiment, while a promoted control keeps serving all of them from the version that
worked. The audit entry says it was a roll-back, and why.

Operators may pause (the controller leaves the rollout alone), resume, or override:
advance, roll back or promote now. A rollout whose experiment is changed by hand (weights
changed, promoted, stopped) ends: it no longer steers the experiment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from abplatform.core.errors import ConflictError, InvalidInputError, StaleWriteError
from abplatform.core.lifecycle import (
    Command,
    ExperimentStatus,
    RolloutCommand,
    RolloutStatus,
    check_rollout_transition,
    check_transition,
)
from abplatform.core.rollout import (
    RolloutPlan,
    RolloutView,
    check_experiment,
    default_margins,
    treatment_key,
)
from abplatform.core.rollout_decision import RolloutAction, evaluate
from abplatform.core.views import ExperimentView
from abplatform.service import experiments as commands
from abplatform.service.experiments import AuditNote
from abplatform.store import experiments as repo
from abplatform.store import queries
from abplatform.store import rollouts as store
from abplatform.store.models import Rollout

CONTROLLER = "rollout-controller"
"""The actor the controller's actions are audited under."""

Override = Literal["advance", "roll_back", "promote"]

_COMMAND = {"advance": RolloutCommand.ADVANCE, "roll back": RolloutCommand.ROLL_BACK,
            "promote": RolloutCommand.PROMOTE}  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _weights(view: ExperimentView, control: float, treatment: float) -> list[float]:
    """(control, treatment) percent in the experiment's variant order."""
    return [control if v.is_control else treatment for v in view.variants]


# ----------------------------------------------------------------------------- reads


def get_rollout(session: Session, name: str) -> RolloutView:
    """The rollout of experiment ``name``.

    Raises:
        NotFoundError: no such experiment, or it has no rollout.
    """
    exp = repo.load(session, name)
    return store.to_view(store.load(session, exp), exp.name)


def list_rollouts(session: Session) -> list[RolloutView]:
    """Every rollout, newest first."""
    return store.all_views(session)


def find_rollout(session: Session, name: str) -> RolloutView | None:
    """The rollout of experiment ``name``, or None when it has none."""
    exp = repo.load(session, name)
    row = store.find(session, exp.id)
    return None if row is None else store.to_view(row, exp.name)


# ----------------------------------------------------------------------------- commands


def _commit(session: Session, name: str) -> None:
    try:
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise StaleWriteError(
            f"the rollout of '{name}' was changed by someone else during this write; reload "
            "and try again"
        ) from exc


def create_rollout(
    session: Session, name: str, plan: RolloutPlan | None = None, *, actor: str,
    steps: tuple[float, ...] = (5.0, 25.0, 50.0),
) -> RolloutView:  # fmt: skip
    """Put experiment ``name`` (draft or running) on a ramp: its weights become the first
    step's (a sticky change; a draft is started) and the controller takes it from there.
    ``plan`` None: the default plan over ``steps``, with the serving margins.

    Raises:
        InvalidInputError: a bad plan, not exactly one treatment, or a running experiment
            whose treatment already has more than the first step. ConflictError: it has a
            rollout already, or is stopped or concluded. NotFoundError: unknown name.
    """
    exp = repo.load(session, name, for_update=True)
    view = repo.to_view(exp)
    check_experiment(view)
    plan = plan or RolloutPlan(steps, margins=default_margins(view.fallback_to_control))
    plan = plan.validate()
    check_transition(name, exp.status, Command.ROLL_OUT)
    if (old := store.find(session, exp.id)) is not None:
        raise ConflictError(
            f"experiment '{name}' already has a rollout ({old.status.replace('_', ' ')}); one "
            "rollout per experiment"
        )
    treatment = treatment_key(view)
    share = next(v.weight for v in view.variants if v.key == treatment)
    if view.status == ExperimentStatus.RUNNING and share > plan.steps[0] + 1e-9:
        raise InvalidInputError(
            f"the treatment of '{name}' already has {share:g}%; a rollout starts at its first "
            f"step ({plan.steps[0]:g}%) and never moves a treated unit back: start the steps at "
            f"{share:g}% or more"
        )
    target = _weights(view, *plan.weights(0))
    note = AuditNote("rollout_step", {"rollout": {"step": 1, "share": plan.steps[0]}},
                     f"rollout step 1 at {plan.steps[0]:g}%", commit=False)  # fmt: skip
    if any(abs(a - b) > 1e-9 for a, b in zip(view.current_phase.weights, target, strict=True)):
        commands.set_weights(session, name, target, actor=actor, audit=note)
    if exp.status == ExperimentStatus.DRAFT:
        commands.start_experiment(session, name, actor=actor, commit=False)
    row = store.add_rollout(session, exp, plan, exp.phases[-1].number, _now())
    store.audit(session, exp, actor=actor, action="rollout_create", before=None,
                after={"plan": plan.to_json(), **store.snapshot(row)})  # fmt: skip
    _commit(session, name)
    return store.to_view(row, exp.name)


def _change_status(
    session: Session, name: str, command: RolloutCommand, *, actor: str, note: str,
    expected_version: int | None,
) -> RolloutView:  # fmt: skip
    exp = repo.load(session, name, for_update=True)
    row = store.load(session, exp, for_update=True)
    _check_version(name, row, expected_version)
    target = check_rollout_transition(name, row.status, command)
    before = store.snapshot(row)
    row.status = target.value
    row.note = note
    row.updated_at = _now()
    session.flush()
    store.audit(session, exp, actor=actor, action=f"rollout_{command.value}", before=before,
                after={**store.snapshot(row), "note": note})  # fmt: skip
    _commit(session, name)
    return store.to_view(row, exp.name)


def _check_version(name: str, row: Rollout, expected: int | None) -> None:
    if expected is not None and row.version != expected:
        raise StaleWriteError(
            f"the rollout of '{name}' changed since you read it (you had version {expected}, "
            f"it is now {row.version}); reload and try again"
        )


def pause_rollout(
    session: Session, name: str, *, actor: str, reason: str = "",
    expected_version: int | None = None,
) -> RolloutView:  # fmt: skip
    """Pause a ramping rollout: the controller leaves its weights alone until resumed.

    Raises:
        ConflictError: it is not ramping. StaleWriteError: stale ``expected_version``.
    """
    note = f"paused by {actor}" + (f": {reason}" if reason else "")
    return _change_status(session, name, RolloutCommand.PAUSE, actor=actor, note=note,
                          expected_version=expected_version)  # fmt: skip


def resume_rollout(
    session: Session, name: str, *, actor: str, expected_version: int | None = None
) -> RolloutView:
    """Resume a paused rollout (the controller evaluates it again at its next check).

    Raises:
        ConflictError: it is not paused. StaleWriteError: stale ``expected_version``.
    """
    note = f"resumed by {actor}"
    return _change_status(session, name, RolloutCommand.RESUME, actor=actor, note=note,
                          expected_version=expected_version)  # fmt: skip


def override_rollout(
    session: Session, name: str, command: Override, *, actor: str, reason: str = "",
    expected_version: int | None = None,
) -> RolloutView:  # fmt: skip
    """An operator's override: ``advance`` to the next step, ``roll_back`` to the control
    or ``promote`` the treatment now, whatever the evidence says (which is still audited
    beside the operator's reason).

    Raises:
        InvalidInputError: unknown command, or advancing past the last step.
        ConflictError: the rollout has ended. StaleWriteError: stale ``expected_version``.
    """
    kinds = {"advance": "advance", "roll_back": "roll back", "promote": "promote"}
    if command not in kinds:
        raise InvalidInputError(f"override is {command!r}; allowed: advance, roll_back, promote")
    view = get_rollout(session, name)
    found = evaluate_rollout(session, name)
    session.rollback()  # end the read transaction before the write locks
    kind = kinds[command]
    if kind == "advance" and view.step >= len(view.plan.steps) - 1:
        raise InvalidInputError(
            f"the rollout of '{name}' is at its last step ({view.step_label}); promote or roll "
            "back instead"
        )
    weights = {"advance": view.plan.weights(min(view.step + 1, len(view.plan.steps) - 1)),
               "roll back": (100.0, 0.0), "promote": (0.0, 100.0)}[kind]  # fmt: skip
    action = RolloutAction(
        kind, view.step, weights, f"override:{command}",  # type: ignore[arg-type]
        f"operator override by {actor}{': ' + reason if reason else ''} ({view.step_label})",
        found.evidence if isinstance(found, RolloutAction) else None,
    )  # fmt: skip
    return apply_action(session, name, action, actor=actor,
                        expected_version=expected_version or view.version)  # fmt: skip


# ----------------------------------------------------------------------------- controller


def outside_change(config: ExperimentView, row: Rollout) -> str | None:
    """Why a ramping rollout no longer steers its experiment (changed by hand), or None."""
    if config.status != ExperimentStatus.RUNNING:
        return f"the experiment was {config.status} outside the rollout"
    if config.current_phase.number != row.phases[-1]:
        p = config.current_phase
        return (
            f"the experiment's weights were changed outside the rollout (phase {p.number}: "
            f"{p.reason})"
        )
    return None


def evaluate_rollout(
    session: Session, name: str, now: datetime | None = None
) -> RolloutAction | str:
    """The controller's decision for the rollout of ``name`` now (reads only), or the
    reason it no longer steers its experiment (see :func:`outside_change`)."""
    exp = repo.load(session, name)
    row = store.load(session, exp)
    config = repo.to_view(exp)
    if (why := outside_change(config, row)) is not None:
        return why
    view = store.to_view(row, exp.name)
    phases = [config.phase(n) for n in view.phases]
    datas = queries.fetch_phases_data(session, config, phases)
    return evaluate(config, datas, view.plan, view.state, now or _now())


def apply_action(
    session: Session, name: str, action: RolloutAction, *, actor: str, expected_version: int,
    experiment_version: int | None = None, lease: tuple[str, int] | None = None,
    now: datetime | None = None,
) -> RolloutView:  # fmt: skip
    """Apply an advance, roll-back or promotion in one transaction: the experiment's
    command, the rollout row, and an audit entry with the action's reason and figures.

    Raises:
        StaleWriteError: the rollout (or experiment) changed since it was evaluated (e.g.
            another controller applied this step). LeaseLostError: ``lease`` is no longer
            held. ConflictError: the rollout or experiment state forbids it.
    """
    at = now or _now()
    if lease is not None:
        store.check_lease(session, *lease)
    exp = repo.load(session, name, for_update=True)
    row = store.load(session, exp, for_update=True)
    _check_version(name, row, expected_version)
    if row.step != action.step:
        raise StaleWriteError(f"the rollout of '{name}' is no longer at step {action.step + 1}")
    target = check_rollout_transition(name, row.status, _COMMAND[action.kind])
    plan = RolloutPlan.from_json(row.plan)
    view = repo.to_view(exp)
    record = {**action.to_json(), "at": at.isoformat()}
    note = AuditNote(f"rollout_{action.kind.replace(' ', '_')}", {"rollout": record},
                     commit=False)  # fmt: skip
    if action.kind == "advance":
        nxt = row.step + 1
        label = f"rollout step {nxt + 1} at {plan.steps[nxt]:g}%"
        note = AuditNote(note.action, note.extra, label, commit=False)
        commands.set_weights(session, name, _weights(view, *plan.weights(nxt)), actor=actor,
                             expected_version=experiment_version, audit=note)  # fmt: skip
        row.step, row.step_started_at = nxt, at
        row.phases = [*row.phases, exp.phases[-1].number]
    else:
        key = view.control.key if action.kind == "roll back" else treatment_key(view)
        reason = "rolled back to the control" if action.kind == "roll back" else None
        note = AuditNote(note.action, note.extra, reason and f"rollout {reason}", commit=False)
        commands.promote(session, name, key, actor=actor, expected_version=experiment_version,
                         audit=note)  # fmt: skip
    row.status = target.value
    row.last_action, row.last_checked_at, row.updated_at = record, at, at
    _commit(session, name)
    return store.to_view(row, exp.name)


def step_rollout(
    session: Session, name: str, *, lease: tuple[str, int] | None, interval_s: float,
    now: datetime | None = None,
) -> RolloutAction | str:  # fmt: skip
    """One controller step for the rollout of ``name``: evaluate it; apply an advance,
    roll-back or promotion (:func:`apply_action`), record a hold on the rollout row, or
    end the rollout when its experiment was changed by hand. Returns the action (or the
    reason the rollout ended).

    Raises:
        StaleWriteError / LeaseLostError / ConflictError: as :func:`apply_action`.
    """
    at = now or _now()
    exp = repo.load(session, name)
    row = store.load(session, exp)
    version, experiment_version = row.version, exp.version
    if row.status != RolloutStatus.RAMPING:
        return f"rollout is {row.status}"
    decision = evaluate_rollout(session, name, at)
    session.rollback()  # the reads' snapshot ends here; the write locks what it changes
    if isinstance(decision, str):
        if lease is not None:
            store.check_lease(session, *lease)
        _change_status(session, name, RolloutCommand.END, actor=CONTROLLER, note=decision,
                       expected_version=version)  # fmt: skip
        return decision
    if decision.kind == "hold":
        if lease is not None:
            store.check_lease(session, *lease)
        row = store.load(session, repo.load(session, name))
        record: dict[str, Any] = decision.to_json()
        nxt = at + timedelta(seconds=interval_s)
        record.update(at=at.isoformat(), next_check_at=nxt.isoformat())
        store.record_check(session, row, record, at)
        session.commit()
        return decision
    apply_action(session, name, decision, actor=CONTROLLER, expected_version=version,
                 experiment_version=experiment_version, lease=lease, now=at)  # fmt: skip
    return decision


__all__ = [
    "CONTROLLER",
    "Override",
    "apply_action",
    "create_rollout",
    "evaluate_rollout",
    "find_rollout",
    "get_rollout",
    "list_rollouts",
    "outside_change",
    "override_rollout",
    "pause_rollout",
    "resume_rollout",
    "step_rollout",
]
