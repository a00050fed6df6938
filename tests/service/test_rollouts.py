"""Safe rollouts through the real store: traffic as the router logs it, the controller's
ticks, the experiment's phases and the audit log; the lease and the guards that keep a
step from being applied twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from abplatform import service
from abplatform.core import routing
from abplatform.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StaleWriteError,
)
from abplatform.core.rollout import RolloutPlan, parse_margin
from abplatform.core.rollout_decision import RolloutAction
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.service import rollouts
from abplatform.service.controller import RolloutController
from abplatform.store import experiments as repo
from abplatform.store import logstore
from abplatform.store import rollouts as store
from abplatform.store.connection import Database
from tests.service.test_reports import V1, V2, create, request_row

PLAN = RolloutPlan(
    steps=(10.0, 50.0), min_duration_s=0.0, min_units=20, promote_when="safe",
    margins=(parse_margin("error_rate=1pt"), parse_margin("latency_p95=25%")),
)  # fmt: skip


def draft(session: Session, name: str = "ramp") -> None:
    spec = ExperimentSpec(
        name=name, hash_seed=name, primary_metric="error_rate",
        variants=[
            VariantSpec(key="control", model_version="v1", backend_app_id=V1, is_control=True),
            VariantSpec(key="treatment", model_version="v2", backend_app_id=V2),
        ],
    )  # fmt: skip
    service.create_experiment(session, spec, actor="t")


def traffic(db: Database, name: str, units: range, rng: np.random.Generator,
            p_error: dict[str, float] | None = None) -> None:  # fmt: skip
    """Three requests per unit, routed by the experiment's current config."""
    p_error = p_error or {}
    with db.sessions() as s:
        cfg = repo.routing_config(s, name)
        view = service.get_experiment(s, name)
    rows = []
    for u in units:
        decision = routing.decide_route(cfg, f"user-{u}")
        key = decision.target.key
        for _ in range(3):
            failed = rng.random() < p_error.get(key, 0.0)
            rows.append(request_row(
                view, f"user-{u}", key, served=None if failed else key,
                status="error" if failed else "ok", latency_ms=float(rng.lognormal(4, 0.3)),
                phase_id=cfg.phase_id,
            ))  # fmt: skip
    logstore.write_batch(db.engine, rows, [])


def actions(session: Session, name: str) -> list[str]:
    return [e["action"] for e in service.audit_log(session, name)]


def test_a_healthy_rollout_ramps_step_by_step_and_promotes(db: Database, session: Session) -> None:
    draft(session)
    view = rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    assert (view.status, view.step, view.share) == ("ramping", 0, 10.0)
    assert service.get_experiment(session, "ramp").status == "running"
    controller = RolloutController(db, interval_s=1, lease_s=5)
    rng = np.random.default_rng(1)
    traffic(db, "ramp", range(0, 1500), rng)
    assert next(a for _, a in controller.tick()).kind == "advance"
    traffic(db, "ramp", range(0, 3000), rng)  # returning units, and new ones
    (done,) = controller.tick()
    assert done[1].kind == "promote", done[1].reason
    session.expire_all()
    exp = service.get_experiment(session, "ramp")
    assert (exp.status, exp.winner) == ("concluded", "treatment")
    assert [p.weights for p in exp.phases] == [(50, 50), (90, 10), (50, 50), (0, 100)]
    assert actions(session, "ramp") == [
        "create", "rollout_step", "start", "rollout_create", "rollout_advance", "rollout_promote"
    ]  # fmt: skip
    promoted = service.audit_log(session, "ramp")[-1]
    assert promoted["actor"] == rollouts.CONTROLLER
    assert "every guardrail within its margin" in promoted["after"]["rollout"]["reason"]
    assert promoted["after"]["rollout"]["evidence"]["guardrails"][0]["metric"] == "error_rate"
    assert rollouts.get_rollout(session, "ramp").status == "promoted"


def test_a_regression_is_rolled_back_to_the_control_which_keeps_serving(
    db: Database, session: Session
) -> None:
    draft(session)
    rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    traffic(db, "ramp", range(2000), np.random.default_rng(2), {"treatment": 0.3})
    (done,) = RolloutController(db, interval_s=1, lease_s=5).tick()
    assert done[1].kind == "roll back" and done[1].code == "regressed:error_rate"
    session.expire_all()
    exp = service.get_experiment(session, "ramp")
    assert (exp.status, exp.winner) == ("concluded", "control")  # serving, not stopped
    entry = service.audit_log(session, "ramp")[-1]
    assert entry["action"] == "rollout_roll_back"
    assert entry["after"]["rollout"]["reason"].startswith(
        "step 1/2 at 10%: guardrail error_rate regressed beyond its margin"
    )
    assert rollouts.get_rollout(session, "ramp").status == "rolled_back"


def test_a_step_is_never_applied_twice(db: Database, session: Session) -> None:
    draft(session)
    rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    traffic(db, "ramp", range(1500), np.random.default_rng(3))
    version = rollouts.get_rollout(session, "ramp").version
    decision = rollouts.evaluate_rollout(session, "ramp")
    session.rollback()
    assert isinstance(decision, RolloutAction) and decision.kind == "advance"
    rollouts.apply_action(session, "ramp", decision, actor="a", expected_version=version)
    with pytest.raises(StaleWriteError):  # a second controller with the same reading
        rollouts.apply_action(session, "ramp", decision, actor="b", expected_version=version)
    session.rollback()
    view = rollouts.get_rollout(session, "ramp")
    assert view.step == 1 and len(service.get_experiment(session, "ramp").phases) == 3


def test_one_controller_acts_and_a_lost_lease_cannot_write(db: Database, session: Session) -> None:
    a = RolloutController(db, interval_s=0.1, lease_s=0.6, holder="a")
    b = RolloutController(db, interval_s=0.1, lease_s=0.6, holder="b")
    a.tick()
    b.tick()
    assert a.acting and not b.acting
    a_token = a.token
    time.sleep(0.8)  # a stops renewing (killed): its lease expires on the database's clock
    b.tick()
    assert b.acting and b.token == (a_token or 0) + 1
    draft(session)
    rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    traffic(db, "ramp", range(1500), np.random.default_rng(4))
    with pytest.raises(store.LeaseLostError):
        rollouts.step_rollout(session, "ramp", lease=("a", a_token or 0), interval_s=1)
    session.rollback()
    assert rollouts.get_rollout(session, "ramp").step == 0
    b.release()
    a.tick()
    assert a.acting  # a clean stop hands over at the next tick


def test_operators_pause_resume_and_override(db: Database, session: Session) -> None:
    draft(session)
    view = rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    traffic(db, "ramp", range(1500), np.random.default_rng(5))
    paused = rollouts.pause_rollout(session, "ramp", actor="ann", reason="holiday",
                                    expected_version=view.version)  # fmt: skip
    assert paused.note == "paused by ann: holiday"
    assert RolloutController(db, interval_s=1, lease_s=5).tick() == []  # not ramping
    with pytest.raises(ConflictError, match="it is paused"):
        rollouts.pause_rollout(session, "ramp", actor="ann")
    session.rollback()
    rollouts.resume_rollout(session, "ramp", actor="ann")
    after = rollouts.override_rollout(session, "ramp", "advance", actor="ann", reason="go")
    assert after.step == 1
    with pytest.raises(InvalidInputError, match="last step"):
        rollouts.override_rollout(session, "ramp", "advance", actor="ann")
    session.rollback()
    back = rollouts.override_rollout(session, "ramp", "roll_back", actor="ann", reason="pager")
    assert back.status == "rolled_back"
    entry = service.audit_log(session, "ramp")[-1]
    assert (
        entry["actor"] == "ann"
        and "operator override by ann: pager" in entry["after"]["rollout"]["reason"]
    )


def test_a_hand_made_change_ends_the_rollout(db: Database, session: Session) -> None:
    draft(session)
    rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    service.set_weights(session, "ramp", [70, 30], actor="bob")
    (done,) = RolloutController(db, interval_s=1, lease_s=5).tick()
    assert "weights were changed outside the rollout" in done[1]
    assert rollouts.get_rollout(session, "ramp").status == "ended"


def test_bad_rollouts_are_refused_and_change_nothing(session: Session) -> None:
    create(session, "running", weights=[50, 50])
    with pytest.raises(InvalidInputError, match="already has 50%"):
        rollouts.create_rollout(session, "running", PLAN, actor="ops")
    session.rollback()
    draft(session)
    with pytest.raises(InvalidInputError, match="increasing treatment shares"):
        rollouts.create_rollout(session, "ramp", RolloutPlan(steps=(50.0, 10.0)), actor="ops")
    session.rollback()
    assert service.get_experiment(session, "ramp").status == "draft"
    rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    with pytest.raises(ConflictError, match="already has a rollout"):
        rollouts.create_rollout(session, "ramp", PLAN, actor="ops")
    session.rollback()
    assert rollouts.list_rollouts(session)[0].experiment == "ramp"
    assert rollouts.find_rollout(session, "running") is None
    assert datetime.now(UTC) - rollouts.get_rollout(session, "ramp").step_started_at < timedelta(
        minutes=1
    )
    service.promote(session, "running", "treatment", actor="ops")
    with pytest.raises(ConflictError, match="cannot start a safe rollout of experiment "
                       "'running': it is concluded, and this is allowed only when it is draft "
                       "or running"):  # fmt: skip
        rollouts.create_rollout(session, "running", PLAN, actor="ops")
    session.rollback()
    with pytest.raises(NotFoundError, match="it is concluded; a rollout starts from a draft"):
        rollouts.get_rollout(session, "running")
