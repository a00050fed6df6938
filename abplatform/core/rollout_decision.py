"""A safe rollout's decision: advance, hold, roll back or promote, with the reason in a
sentence and every figure (pure; the rule is described in :mod:`abplatform.core.rollout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from abplatform.core.jsonable import json_safe
from abplatform.core.metrics import PhaseData
from abplatform.core.rollout import RolloutPlan, RolloutState
from abplatform.core.rollout_evidence import (
    RolloutEvidence,
    describe_guardrail,
    describe_primary,
    gather_evidence,
)
from abplatform.core.views import ExperimentView

ActionKind = Literal["advance", "hold", "roll back", "promote"]


@dataclass(frozen=True)
class RolloutAction:
    """What the controller does: ``kind`` at ``step`` (0-based), the ``weights``
    (control, treatment percent) it sets (None for a hold), a machine-readable ``code``
    (e.g. ``regressed:error_rate``, ``min_duration``) and the ``reason`` in a sentence
    with the figures; ``evidence`` holds all of them."""

    kind: ActionKind
    step: int
    weights: tuple[float, float] | None
    code: str
    reason: str
    evidence: RolloutEvidence | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (evidence included; NaN and infinities as None)."""

        return json_safe(asdict(self))  # type: ignore[no-any-return]


def _step_label(plan: RolloutPlan, step: int) -> str:
    last = " (last)" if step == len(plan.steps) - 1 else ""
    return f"step {step + 1}/{len(plan.steps)}{last} at {plan.steps[step]:g}%"


def _hold(plan: RolloutPlan, state: RolloutState, ev: RolloutEvidence | None, code: str,
          why: str) -> RolloutAction:  # fmt: skip
    return RolloutAction(
        "hold", state.step, None, code, f"{_step_label(plan, state.step)}: {why}", ev
    )


def _rollback_reason(
    plan: RolloutPlan, state: RolloutState, ev: RolloutEvidence
) -> RolloutAction | None:
    label = _step_label(plan, state.step)
    for g in ev.guardrails:
        if g.verdict == "regressed":
            return RolloutAction(
                "roll back", state.step, (100.0, 0.0), f"regressed:{g.metric}",
                f"{label}: guardrail {g.metric} regressed beyond its margin "
                f"({g.margin.describe()}): {describe_guardrail(g)}; {ev.units[1]} treatment "
                f"units; rolling back to the control",
                ev,
            )  # fmt: skip
    if ev.primary.verdict == "worse":
        return RolloutAction(
            "roll back", state.step, (100.0, 0.0), f"worse:{ev.primary.metric}",
            f"{label}: {describe_primary(ev.primary)}; rolling back to the control", ev,
        )  # fmt: skip
    return None


def decide(
    plan: RolloutPlan, state: RolloutState, ev: RolloutEvidence, now: datetime
) -> RolloutAction:
    """The controller's rule (module docstring), for a ramping rollout; a paused or
    finished one only holds."""
    if state.status != "ramping":
        return _hold(plan, state, ev, f"status:{state.status}", f"rollout is {state.status}")
    rollback = _rollback_reason(plan, state, ev)
    if rollback is not None:
        return rollback
    for h in ev.health:
        if not h.ok:
            return _hold(plan, state, ev, f"health:{h.name}", f"health check {h.name} failed: "
                         f"{h.detail}; holding until it is fixed")  # fmt: skip
    elapsed = max((now - state.step_started_at).total_seconds(), 0.0)
    if sum(ev.step_units) == 0 and elapsed >= plan.min_duration_s:
        return _hold(plan, state, ev, "no_traffic", f"no traffic in this step for {elapsed:.0f} s")
    if elapsed < plan.min_duration_s:
        why = f"{elapsed:.0f} s of the step's minimum {plan.min_duration_s:g} s"
        return _hold(plan, state, ev, "min_duration", why)
    if ev.step_units[1] < plan.min_units:
        return _hold(plan, state, ev, "min_units", f"{ev.step_units[1]} of the "
                     f"{plan.min_units} treatment units the step needs")  # fmt: skip
    untested = [g for g in ev.guardrails if g.verdict == "no data"]
    if untested:
        return _hold(plan, state, ev, f"no_data:{untested[0].metric}",
                     describe_guardrail(untested[0]))  # fmt: skip
    summary = "; ".join(describe_guardrail(g) for g in ev.guardrails)
    last = state.step == len(plan.steps) - 1
    pending = [g for g in ev.guardrails if g.verdict != "within margin"]
    if pending and (last or plan.advance_when == "within_margin"):
        return _hold(plan, state, ev, f"not_shown:{pending[0].metric}",
                     f"waiting for evidence that {describe_guardrail(pending[0])}")  # fmt: skip
    if not last:
        nxt = state.step + 1
        shown = (
            "every guardrail within its margin" if not pending else "no guardrail beyond its margin"
        )
        return RolloutAction(
            "advance", state.step, plan.weights(nxt), "passed",
            f"{_step_label(plan, state.step)} passed ({elapsed:.0f} s, {ev.step_units[1]} "
            f"treatment units, {shown}: {summary}); advancing to step {nxt + 1} at "
            f"{plan.steps[nxt]:g}%",
            ev,
        )  # fmt: skip
    return _last_step(plan, state, ev, summary)


def _last_step(
    plan: RolloutPlan, state: RolloutState, ev: RolloutEvidence, summary: str
) -> RolloutAction:
    if plan.promote_when == "win" and ev.primary.verdict != "better":
        return _hold(plan, state, ev, "primary_not_better",
                     f"every guardrail within its margin; waiting for the "
                     f"{describe_primary(ev.primary)}")  # fmt: skip
    why = "" if plan.promote_when == "safe" else f"; {describe_primary(ev.primary)}"
    return RolloutAction(
        "promote", state.step, (0.0, 100.0), "promoted",
        f"{_step_label(plan, state.step)}: every guardrail within its margin ({summary})"
        f"{why}; promoting the treatment to 100%",
        ev,
    )  # fmt: skip


def evaluate(
    config: ExperimentView,
    datas: Sequence[PhaseData],
    plan: RolloutPlan,
    state: RolloutState,
    now: datetime,
) -> RolloutAction:
    """:func:`decide` on :func:`gather_evidence` of ``datas`` (the rollout's phases)."""
    return decide(plan, state, gather_evidence(config, datas, plan), now)


__all__ = ["ActionKind", "RolloutAction", "decide", "evaluate"]
