"""Simulated safe rollouts for the core's tests: traffic in vectorised batches, the real
evidence and decision code (:mod:`abplatform.core.rollout_decision`) at every look.

Each look brings ``units_per_look`` new units, assigned to the treatment with the current
step's share; each unit makes 1 + Poisson(2) requests, fails each with its arm's error
rate, and answers the others after a lognormal latency (ms) times a per-unit factor
(lognormal, σ 0.2: some users send heavier prompts), times ``slowdown`` in the treatment.
The per-unit sums and the latency histogram are accumulated as the store would keep
them, per phase (one phase per ramp step).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from abplatform.core.metrics import (
    BINS,
    RATIO_PAIRS,
    REQUEST_COLUMNS,
    Moments,
    PhaseData,
    VariantData,
)
from abplatform.core.rollout import RolloutPlan, RolloutState
from abplatform.core.rollout_decision import RolloutAction, evaluate
from abplatform.core.stats import LatencyHistogram
from tests.core.builders import T0, experiment


@dataclass(frozen=True)
class ArmModel:
    """One arm's behaviour: error rate (fraction), lognormal latency (ms) parameters."""

    p_error: float = 0.01
    log_mean: float = 5.0  # about 150 ms
    log_sd: float = 0.35
    slowdown: float = 1.0


@dataclass
class Accumulator:
    """Per-unit column sums, squares and products over a phase's units of one arm, and
    the latency histogram counts of its successful requests."""

    n: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REQUEST_COLUMNS, 0.0))
    squares: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REQUEST_COLUMNS, 0.0))
    products: dict[tuple[str, str], float] = field(
        default_factory=lambda: dict.fromkeys(RATIO_PAIRS, 0.0)
    )
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS.n_bins + 2, dtype=np.int64))

    def add(self, rng: np.random.Generator, units: int, arm: ArmModel) -> None:
        if units == 0:
            return
        k = 1 + rng.poisson(2.0, units)
        errors = rng.binomial(k, arm.p_error)
        ok = k - errors
        factor = rng.lognormal(0.0, 0.2, units)
        lat = rng.lognormal(arm.log_mean, arm.log_sd, int(ok.sum())) * np.repeat(factor, ok)
        lat *= arm.slowdown
        owner = np.repeat(np.arange(units), ok)
        latency = np.bincount(owner, weights=lat, minlength=units)
        zeros = np.zeros(units)
        cols = {
            "requests": k.astype(float), "errors": errors.astype(float),
            "successes": ok.astype(float), "latency_ms": latency, "valid_requests": k.astype(float),
            "rejected": zeros, "fallbacks": zeros,
        }  # fmt: skip
        cols = {c: cols.get(c, zeros) for c in REQUEST_COLUMNS}  # cost: not simulated (0)
        self.n += units
        for c, v in cols.items():
            self.sums[c] += float(v.sum())
            self.squares[c] += float((v * v).sum())
        for a, b in RATIO_PAIRS:
            self.products[(a, b)] += float((cols[a] * cols[b]).sum())
        self.counts += np.bincount(BINS.bucket(lat), minlength=BINS.n_bins + 2)

    def data(self) -> VariantData:
        return VariantData(
            requests=Moments(self.n, dict(self.sums), dict(self.squares), dict(self.products)),
            latency=LatencyHistogram(BINS, tuple(int(c) for c in self.counts)),
        )


@dataclass(frozen=True)
class Outcome:
    """How a simulated rollout ended: ``kind`` (``roll back``, ``promote`` or ``held``
    when it ran out of looks), at which look and step, the units (both arms) and
    treatment units so far, and the last action."""

    kind: str
    look: int
    step: int
    units: int
    treatment_units: int
    action: RolloutAction


def run_rollout(
    rng: np.random.Generator,
    plan: RolloutPlan,
    *,
    control: ArmModel = ArmModel(),
    treatment: ArmModel = ArmModel(),
    primary: str = "latency_mean",
    units_per_look: int = 100,
    look_s: float = 60.0,
    max_looks: int = 40,
) -> Outcome:
    """Run one rollout until it rolls back, promotes, or ``max_looks`` pass."""
    state = RolloutState("ramping", 0, T0, (1,))
    phases = [(Accumulator(), Accumulator())]
    action: RolloutAction | None = None
    for look in range(1, max_looks + 1):
        share = plan.steps[state.step] / 100.0
        n_t = int(rng.binomial(units_per_look, share))
        phases[-1][0].add(rng, units_per_look - n_t, control)
        phases[-1][1].add(rng, n_t, treatment)
        config = experiment(
            primary=primary,
            guardrails=[m.metric for m in plan.margins],
            phases=[plan.weights(s) for s in range(state.step + 1)],
        )
        datas = [
            PhaseData(i + 1, {"control": c.data(), "treatment": t.data()})
            for i, (c, t) in enumerate(phases)
        ]
        now = T0 + timedelta(seconds=look * look_s)
        action = evaluate(config, datas, plan, state, now)
        units = sum(c.n + t.n for c, t in phases)
        treated = sum(t.n for _, t in phases)
        if action.kind in ("roll back", "promote"):
            return Outcome(action.kind, look, state.step, units, treated, action)
        if action.kind == "advance":
            state = dataclasses.replace(
                state, step=state.step + 1, step_started_at=now, phases=(*state.phases, look)
            )
            phases.append((Accumulator(), Accumulator()))
    assert action is not None
    return Outcome("held", max_looks, state.step, units, treated, action)


PLAN = RolloutPlan(steps=(5.0, 25.0, 50.0), min_duration_s=120.0, min_units=50, promote_when="safe")
"""The simulations' plan: 5 → 25 → 50%, each step at least 2 looks (a look a minute) and
50 treatment units, the default margins (error rate +1 point, p95 +10%, p99 +20%)."""

SCENARIOS: dict[str, ArmModel] = {
    "A/A": ArmModel(),
    "error rate at the margin (+1 point)": ArmModel(p_error=0.02),
    "error rate +5 points": ArmModel(p_error=0.06),
    "latency 2× (p95 and p99 2×)": ArmModel(slowdown=2.0),
}
"""Treatment arms against the control ``ArmModel()`` (1% errors, ~150 ms median)."""


def summarize(outcomes: list[Outcome]) -> dict[str, float]:
    """Share rolled back / promoted, and the median units (both arms, treatment) at a
    rollback."""
    back = [o for o in outcomes if o.kind == "roll back"]
    return {
        "runs": len(outcomes),
        "rolled_back": len(back) / len(outcomes),
        "promoted": sum(o.kind == "promote" for o in outcomes) / len(outcomes),
        "median_units_to_rollback": float(np.median([o.units for o in back])) if back else 0.0,
        "median_treatment_units_to_rollback": (
            float(np.median([o.treatment_units for o in back])) if back else 0.0
        ),
    }


def main() -> None:
    """``python -m tests.core.rollout_sim [RUNS]``: every scenario's figures."""
    import sys

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rng = np.random.default_rng(2026)
    print(f"plan: steps {PLAN.steps}, {PLAN.min_duration_s:g} s and {PLAN.min_units} treatment "
          f"units per step, alpha {PLAN.alpha}; margins: "
          + ", ".join(m.describe() for m in PLAN.margins))  # fmt: skip
    for name, arm in SCENARIOS.items():
        outcomes = [
            run_rollout(rng, PLAN, treatment=arm, primary="error_rate", max_looks=100)
            for _ in range(runs)
        ]
        print(f"{name}: {summarize(outcomes)}")


if __name__ == "__main__":
    main()
