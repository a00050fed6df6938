"""The rollout repository and the controller's lease (DB layer).

Rollouts: rows of ``rollouts`` to :class:`~abplatform.core.rollout.RolloutView`\\ s, the
ramping ones for the controller, and the controller's last evaluation written without
bumping the row's version (a hold every few seconds must not make an operator's pause
stale). The lease: one row per controller role in ``controller_leases``; a process acts
only while it holds the row, on the database's clock, and proves it in the transaction
of each write (:func:`check_lease` takes a share lock, so no other process can take the
lease over until that write has committed or rolled back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abplatform.core.errors import NotFoundError, ServiceError
from abplatform.core.lifecycle import RolloutStatus
from abplatform.core.rollout import RolloutPlan, RolloutView
from abplatform.store.models import AuditEntry, ControllerLease, Experiment, Rollout

ROLE = "rollouts"
"""The lease row of the rollout controller."""


class LeaseLostError(ServiceError):
    """This process no longer holds the controller lease: it must not act."""


def add_rollout(
    session: Session, exp: Experiment, plan: RolloutPlan, phase: int, started_at: datetime
) -> Rollout:
    """A new ramping rollout of ``exp`` at step 0, in experiment phase ``phase``, started
    at ``started_at`` (flushed, not committed)."""
    row = Rollout(
        experiment_id=exp.id,
        plan=plan.to_json(),
        status=RolloutStatus.RAMPING.value,
        step=0,
        step_started_at=started_at,
        phases=[phase],
        created_at=started_at,
        updated_at=started_at,
    )
    session.add(row)
    session.flush()
    return row


def find(session: Session, experiment_id: int, *, for_update: bool = False) -> Rollout | None:
    """The rollout of an experiment, if it has one (row-locked with ``for_update``)."""
    stmt = sa.select(Rollout).where(Rollout.experiment_id == experiment_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def load(session: Session, exp: Experiment, *, for_update: bool = False) -> Rollout:
    """The rollout of ``exp``.

    Raises:
        NotFoundError: it has none (the message says how to create one).
    """
    row = find(session, exp.id, for_update=for_update)
    if row is None:
        if exp.status in ("draft", "running"):
            how = f"create one with 'abplatform rollout create {exp.name} --steps 5,25,50'"
        else:
            how = f"it is {exp.status}; a rollout starts from a draft or running experiment"
        raise NotFoundError(f"experiment '{exp.name}' has no rollout; {how}")
    return row


def ramping_names(session: Session) -> list[str]:
    """Names of the experiments whose rollout is ramping, oldest rollout first."""
    rows = session.execute(
        sa.select(Experiment.name)
        .join(Rollout, Rollout.experiment_id == Experiment.id)
        .where(Rollout.status == RolloutStatus.RAMPING.value)
        .order_by(Rollout.id)
    ).all()
    return [r[0] for r in rows]


def all_views(session: Session) -> list[RolloutView]:
    """Every rollout, newest first."""
    rows = session.execute(
        sa.select(Rollout, Experiment.name)
        .join(Experiment, Experiment.id == Rollout.experiment_id)
        .order_by(Rollout.id.desc())
    ).all()
    return [to_view(r, name) for r, name in rows]


def to_view(row: Rollout, experiment: str) -> RolloutView:
    """The read model of a rollout row."""
    return RolloutView(
        experiment=experiment,
        plan=RolloutPlan.from_json(row.plan),
        status=row.status,
        step=row.step,
        step_started_at=row.step_started_at,
        phases=tuple(row.phases),
        last_action=row.last_action,
        last_checked_at=row.last_checked_at,
        note=row.note,
        version=row.version,
        updated_at=row.updated_at,
    )


def snapshot(row: Rollout) -> dict[str, Any]:
    """JSON-able state of a rollout for the audit log."""
    return {
        "status": row.status,
        "step": row.step,
        "share": RolloutPlan.from_json(row.plan).steps[row.step],
        "phases": list(row.phases),
        "version": row.version,
    }


def record_check(session: Session, row: Rollout, last_action: dict[str, Any], at: datetime) -> None:
    """Store the controller's latest evaluation (a hold) without changing the row's
    version; not committed."""
    session.execute(
        sa.update(Rollout)
        .where(Rollout.id == row.id)
        .values(last_action=last_action, last_checked_at=at)
        .execution_options(synchronize_session=False)
    )


def audit(
    session: Session, exp: Experiment, *, actor: str, action: str, before: Any, after: Any
) -> None:
    """Add an audit entry for a rollout change of ``exp`` (not committed)."""
    session.add(
        AuditEntry(experiment_id=exp.id, actor=actor, action=action, before=before, after=after)
    )


# ----------------------------------------------------------------------------- lease

_ACQUIRE = sa.text(
    """
    INSERT INTO controller_leases AS l (name, holder, token, acquired_at, renewed_at, expires_at)
    VALUES (:name, :holder, 1, now(), now(), now() + make_interval(secs => :ttl))
    ON CONFLICT (name) DO UPDATE SET
        token = CASE WHEN l.holder = :holder AND l.expires_at > now()
                     THEN l.token ELSE l.token + 1 END,
        acquired_at = CASE WHEN l.holder = :holder AND l.expires_at > now()
                           THEN l.acquired_at ELSE now() END,
        holder = :holder,
        renewed_at = now(),
        expires_at = now() + make_interval(secs => :ttl)
    WHERE l.holder = :holder OR l.expires_at <= now()
    RETURNING token
    """
)


def acquire_lease(session: Session, holder: str, ttl_s: float, role: str = ROLE) -> int | None:
    """Take or renew the lease for ``ttl_s`` seconds; its fencing token, or None when
    another holder's lease has not expired. Commits."""
    token = session.execute(_ACQUIRE, {"name": role, "holder": holder, "ttl": ttl_s}).scalar()
    session.commit()
    return None if token is None else int(token)


def release_lease(session: Session, holder: str, role: str = ROLE) -> None:
    """Let the lease expire now if ``holder`` holds it (a clean shutdown hands over at
    once). Commits."""
    session.execute(
        sa.update(ControllerLease)
        .where(ControllerLease.name == role, ControllerLease.holder == holder)
        .values(expires_at=sa.func.now())
    )
    session.commit()


def check_lease(session: Session, holder: str, token: int, role: str = ROLE) -> None:
    """Within a write's transaction: prove ``holder`` still holds the lease with
    ``token``, and keep it from being taken over until the transaction ends.

    Raises:
        LeaseLostError: it expired or another process holds it.
    """
    held = session.execute(
        sa.select(ControllerLease.name)
        .where(
            ControllerLease.name == role,
            ControllerLease.holder == holder,
            ControllerLease.token == token,
            ControllerLease.expires_at > sa.func.now(),
        )
        .with_for_update(read=True)
    ).first()
    if held is None:
        raise LeaseLostError(f"{holder} no longer holds the controller lease (token {token})")


def lease_holder(session: Session, role: str = ROLE) -> dict[str, Any] | None:
    """The lease row (holder, token, acquired_at, renewed_at, expires_at, live), if any."""
    row = session.execute(
        sa.select(
            ControllerLease, (ControllerLease.expires_at > sa.func.now()).label("live")
        ).where(ControllerLease.name == role)
    ).first()
    if row is None:
        return None
    lease, live = row
    return {
        "holder": lease.holder,
        "token": lease.token,
        "acquired_at": lease.acquired_at,
        "renewed_at": lease.renewed_at,
        "expires_at": lease.expires_at,
        "live": bool(live),
    }


__all__ = [
    "ROLE",
    "LeaseLostError",
    "acquire_lease",
    "add_rollout",
    "all_views",
    "audit",
    "check_lease",
    "find",
    "lease_holder",
    "load",
    "ramping_names",
    "record_check",
    "release_lease",
    "snapshot",
    "to_view",
]
