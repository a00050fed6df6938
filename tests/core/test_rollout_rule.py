"""The safe-rollout rule on hand-built traffic: margins, holds, advances, promotions and
roll-backs, each with the sentence an operator reads; and the sticky ramp."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from abplatform.core import assignment, reallocation
from abplatform.core.errors import ConflictError, InvalidInputError
from abplatform.core.lifecycle import RolloutCommand, check_rollout_transition
from abplatform.core.rollout import Margin, RolloutPlan, RolloutState, parse_margin
from abplatform.core.rollout_decision import evaluate
from tests.core.builders import T0, Req, Unit, experiment, phase_data

PLAN = RolloutPlan(steps=(10.0, 50.0), min_duration_s=60, min_units=20, promote_when="safe")
LATER = T0 + timedelta(minutes=5)


def _units(rng: np.random.Generator, n: int, variant: str, p_error: float = 0.0,
           scale: float = 1.0, thumbs: float | None = None) -> list[Unit]:  # fmt: skip
    out = []
    for _ in range(n):
        u = Unit(variant)
        for _ in range(3):
            failed = rng.random() < p_error
            u.requests.append(
                Req("error" if failed else "ok", float(rng.lognormal(4.0, 0.3)) * scale)
            )
        if thumbs is not None:
            u.feedback["thumbs_up"] = [float(rng.random() < thumbs)]
        out.append(u)
    return out


def _evaluate(units: list[Unit], *, step: int = 0, plan: RolloutPlan = PLAN, now=LATER,
              primary: str = "error_rate", status: str = "ramping"):  # fmt: skip
    config = experiment(
        primary=primary, guardrails=[m.metric for m in plan.margins],
        phases=[plan.weights(s) for s in range(step + 1)],
    )  # fmt: skip
    datas = [phase_data([])] * step + [phase_data(units, phase=step + 1)]
    datas = [dataclasses.replace(d, phase=i + 1) for i, d in enumerate(datas)]
    state = RolloutState(status, step, T0, tuple(range(1, step + 2)))
    return evaluate(config, datas, plan, state, now)


def test_margins_parse_and_describe() -> None:
    assert parse_margin("latency_p95=10%") == Margin("latency_p95", 0.10, "relative")
    assert parse_margin("error_rate=1pt") == Margin("error_rate", 0.01, "absolute")
    assert parse_margin("latency_p99 = 250ms") == Margin("latency_p99", 250.0, "absolute")
    assert parse_margin("error_rate=1pt").describe() == "error_rate may rise at most 1 point"
    assert parse_margin("thumbs_up=0.05").describe() == "thumbs_up may drop at most 0.05"
    for bad, says in [("p95<10", "must look like"), ("latency_p95=2pt", "points fit rates"),
                      ("error_rate=5ms", "ms fits latencies"),
                      ("latency_p95=10", "has no unit: write latency_p95=10% .* or "
                                         "latency_p95=10ms"),
                      ("latency_p96=10%", "did you mean")]:  # fmt: skip
        with pytest.raises(InvalidInputError, match=says):
            parse_margin(bad)


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        (RolloutPlan(steps=(50.0, 25.0)), "increasing treatment shares"),
        (RolloutPlan(steps=(5.0, 100.0)), "below 100"),
        (RolloutPlan(steps=()), "steps are none"),
        (RolloutPlan(steps=(5.0,), min_units=0), "min units"),
        (RolloutPlan(steps=(5.0,), promote_when="always"), "allowed: win, safe"),  # type: ignore[arg-type]
        (RolloutPlan(steps=(5.0,), margins=(Margin("error_rate", -1, "absolute"),)), "≥ 0"),
    ],
)
def test_bad_plans_are_refused_with_what_is_allowed(plan: RolloutPlan, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        plan.validate()


def test_the_plan_round_trips_through_json() -> None:
    assert RolloutPlan.from_json(PLAN.to_json()) == PLAN


def test_holds_until_the_step_is_old_enough_and_has_its_units() -> None:
    rng = np.random.default_rng(1)
    healthy = _units(rng, 180, "control") + _units(rng, 20, "treatment")
    early = _evaluate(healthy, now=T0 + timedelta(seconds=30))
    assert (early.kind, early.code) == ("hold", "min_duration")
    assert early.reason.startswith("step 1/2 at 10%: 30 s of the step's minimum 60 s")
    few = _evaluate(healthy[:100] + healthy[-12:])
    assert (few.kind, few.code) == ("hold", "min_units")
    assert "12 of the 20 treatment units" in few.reason


def test_a_healthy_step_advances_and_the_last_step_promotes() -> None:
    rng = np.random.default_rng(2)
    few = _evaluate(_units(rng, 270, "control") + _units(rng, 30, "treatment"))
    assert few.kind == "hold" and few.code == "no_data:latency_p99"  # 90 requests: no p99 yet
    step1 = _evaluate(_units(rng, 1350, "control") + _units(rng, 150, "treatment"))
    assert step1.kind == "advance" and step1.weights == (50.0, 50.0)
    assert "advancing to step 2 at 50%" in step1.reason
    last = _evaluate(_units(rng, 1500, "control") + _units(rng, 1500, "treatment"), step=1)
    assert last.kind == "promote" and last.weights == (0.0, 100.0)
    # No errors in either arm: nothing varies, the difference (0) is exact.
    (error_rate,) = [g for g in last.evidence.guardrails if g.metric == "error_rate"]
    assert error_rate.verdict == "within margin" and "no variation" in (error_rate.note or "")


def test_an_error_regression_rolls_back_at_once_naming_guardrail_step_and_figures() -> None:
    rng = np.random.default_rng(3)
    action = _evaluate(
        _units(rng, 400, "control", 0.01) + _units(rng, 60, "treatment", 0.30),
        now=T0 + timedelta(seconds=10),  # before the step's minimum: a roll-back does not wait
    )
    assert action.kind == "roll back" and action.weights == (100.0, 0.0)
    assert action.code == "regressed:error_rate"
    assert action.reason.startswith("step 1/2 at 10%: guardrail error_rate regressed beyond its")
    assert "lower bound" in action.reason and "> margin +1 point" in action.reason


def test_a_slower_treatment_rolls_back_on_p95() -> None:
    rng = np.random.default_rng(4)
    plan = dataclasses.replace(PLAN, margins=(parse_margin("latency_p95=10%"),))
    action = _evaluate(
        _units(rng, 300, "control") + _units(rng, 60, "treatment", scale=2.0), plan=plan
    )
    assert (action.kind, action.code) == ("roll back", "regressed:latency_p95")
    assert "latency_p95 may rise at most 10%" in action.reason


def test_a_worse_primary_metric_rolls_back_and_a_better_one_promotes() -> None:
    rng = np.random.default_rng(5)
    win = dataclasses.replace(PLAN, promote_when="win")
    worse = _evaluate(
        _units(rng, 500, "control", thumbs=0.7) + _units(rng, 500, "treatment", thumbs=0.3),
        step=1, plan=win, primary="thumbs_up",
    )  # fmt: skip
    assert (worse.kind, worse.code) == ("roll back", "worse:thumbs_up")
    better = _evaluate(
        _units(rng, 1500, "control", thumbs=0.3) + _units(rng, 1500, "treatment", thumbs=0.7),
        step=1, plan=win, primary="thumbs_up",
    )  # fmt: skip
    assert better.kind == "promote" and "thumbs_up" in better.reason
    even = _evaluate(
        _units(rng, 1500, "control", thumbs=0.5) + _units(rng, 1500, "treatment", thumbs=0.5),
        step=1, plan=win, primary="thumbs_up",
    )  # fmt: skip
    assert (even.kind, even.code) == ("hold", "primary_not_better")


def test_health_checks_hold_and_paused_rollouts_only_hold() -> None:
    rng = np.random.default_rng(6)
    srm = _evaluate(_units(rng, 150, "control") + _units(rng, 150, "treatment"))  # 50/50 ≠ 90/10
    assert (srm.kind, srm.code) == ("hold", "health:srm")
    assert "health check srm failed" in srm.reason
    paused = _evaluate(_units(rng, 270, "control") + _units(rng, 30, "treatment"), status="paused")
    assert (paused.kind, paused.code) == ("hold", "status:paused")
    silent = _evaluate([])
    assert (silent.kind, silent.code) == ("hold", "no_traffic")


def test_too_few_units_are_not_tested() -> None:
    """One unit whose only request failed is no evidence of a 100% error rate."""
    action = _evaluate(
        [*_units(np.random.default_rng(7), 50, "control"), Unit("treatment", [Req("error", 5)])],
        now=T0 + timedelta(seconds=1),
    )
    assert action.kind == "hold"
    assert all(g.verdict == "no data" for g in action.evidence.guardrails)


def test_the_ramp_is_sticky_a_treated_unit_never_returns_to_control() -> None:
    alloc = assignment.fresh_allocation([0.95, 0.05])
    ids = [f"user-{i}" for i in range(5000)]

    def treated(a: assignment.Allocation) -> set[str]:
        return {u for u in ids if assignment.assign_variant(
            u, seed="s", hash_version=2, allocation=a) == 1}  # fmt: skip

    before = treated(alloc)
    for share in (0.25, 0.50):
        alloc = reallocation.reallocate_sticky(alloc, [1 - share, share])
        now = treated(alloc)
        assert before <= now
        before = now
    assert abs(len(before) / len(ids) - 0.5) < 0.03


def test_rollout_lifecycle_refuses_what_it_does_not_allow() -> None:
    assert check_rollout_transition("x", "ramping", RolloutCommand.PAUSE) == "paused"
    with pytest.raises(ConflictError, match="cannot resume the rollout of 'x': it is ramping"):
        check_rollout_transition("x", "ramping", RolloutCommand.RESUME)
    with pytest.raises(ConflictError, match="rolled back"):
        check_rollout_transition("x", "rolled_back", RolloutCommand.PROMOTE)


def test_a_step_advances_on_evidence_of_safety_unless_told_no_regression_suffices() -> None:
    rng = np.random.default_rng(8)
    noisy = dataclasses.replace(PLAN, margins=(parse_margin("latency_p95=3%"),))
    units = _units(rng, 1350, "control") + _units(rng, 150, "treatment")
    held = _evaluate(units, plan=noisy)
    assert (held.kind, held.code) == ("hold", "not_shown:latency_p95")
    assert "waiting for evidence that latency_p95" in held.reason
    lenient = dataclasses.replace(noisy, advance_when="no_regression")
    moved = _evaluate(units, plan=lenient)
    assert moved.kind == "advance" and "no guardrail beyond its margin" in moved.reason
