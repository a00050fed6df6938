"""Safe rollouts on the dashboard (AppTest, real PostgreSQL): the create form's rollout,
the banner with the controller's last decision, and an operator's pause, resume and
override, each checked through the service."""

from __future__ import annotations

import numpy as np
import pytest

from abplatform.core.rollout import RolloutPlan, parse_margin
from abplatform.service import rollouts
from abplatform.service.controller import RolloutController
from abplatform.store.connection import Database
from tests.dashboard.test_dashboard_apptest import (
    V2,
    app_env,  # noqa: F401 (a fixture)
    audit_actions,
    fill_create_form,
    get,
    log_in,
    open_app,
    texts,
)
from tests.service.test_rollouts import draft, traffic

pytestmark = pytest.mark.usefixtures("app_env")

PLAN = RolloutPlan(steps=(10.0, 50.0), min_duration_s=3600.0, min_units=20,
                   margins=(parse_margin("error_rate=1pt"),))  # fmt: skip


def test_the_create_form_starts_a_safe_rollout(db: Database) -> None:
    at = log_in(open_app("create"))
    at.selectbox(key="create_app_1").set_value(V2)
    at = fill_create_form(at, "ramp", create_rollout=True, create_rollout_steps="10,50",
                          create_rollout_units=50)  # fmt: skip
    at.button(key="create_submit").click().run()
    assert not at.exception
    view = get(db, "ramp")
    assert view.status == "running" and view.current_phase.weights == pytest.approx((90, 10))
    with db.sessions() as s:
        ramp = rollouts.get_rollout(s, "ramp")
    assert ramp.plan.steps == (10.0, 50.0) and ramp.plan.min_units == 50
    assert [m.metric for m in ramp.plan.margins] == ["error_rate", "latency_p95", "latency_p99"]
    assert [a for a, _ in audit_actions(db, "ramp")] == [
        "create", "rollout_step", "start", "rollout_create"
    ]  # fmt: skip


def test_a_bad_ramp_is_refused_inline_and_nothing_is_saved(db: Database) -> None:
    at = log_in(open_app("create"))
    at = fill_create_form(at, "ramp", create_rollout=True, create_rollout_steps="50,10")
    at.button(key="create_submit").click().run()
    assert any("increasing treatment shares" in t for t in texts(at, "error"))
    with db.sessions() as s, pytest.raises(Exception, match="unknown experiment"):
        rollouts.get_rollout(s, "ramp")


def test_banner_shows_the_decision_and_operators_pause_resume_and_override(
    db: Database,
) -> None:
    with db.sessions() as s:
        draft(s)
        rollouts.create_rollout(s, "ramp", PLAN, actor="ops")
    traffic(db, "ramp", range(600), np.random.default_rng(1))
    RolloutController(db, interval_s=1, lease_s=5).tick()
    at = open_app("experiment", "ramp")
    (banner,) = [t for t in texts(at, "info") if "Safe rollout" in t]
    assert "step 1/2 at 10%" in banner and "Last decision: **hold**" in banner
    assert "of the step's minimum 3600 s" in banner and "next check" in banner
    assert "rollout_pause" not in {b.key for b in at.button}  # read-only without a login
    at = log_in(at)
    at.text_input(key="rollout_reason").input("release freeze")
    at.button(key="rollout_pause").click().run()
    with db.sessions() as s:
        assert rollouts.get_rollout(s, "ramp").note == "paused by dashboard:alice: release freeze"
    assert any("Paused" in t for t in texts(at, "success"))
    at.button(key="rollout_resume").click().run()
    at.selectbox(key="rollout_override").set_value("roll_back")
    at.button(key="rollout_apply").click().run()
    assert any("Tick the confirmation first" in t for t in texts(at, "error"))
    at.checkbox(key="rollout_confirm").check()
    at.button(key="rollout_apply").click().run()
    with db.sessions() as s:
        assert rollouts.get_rollout(s, "ramp").status == "rolled_back"
    assert get(db, "ramp").winner == "control"
    assert any("rolled back" in t for t in texts(at, "error"))  # the banner, now red
