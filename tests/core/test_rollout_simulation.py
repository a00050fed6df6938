"""Simulated safe rollouts over the pure core: the false rollback rate and the units it
takes to catch a regression. Figures at scale: ``python -m tests.core.rollout_sim 1000``
(``pytest -s`` prints these smaller runs' figures)."""

from __future__ import annotations

import numpy as np

from tests.core.rollout_sim import PLAN, SCENARIOS, run_rollout, summarize


def _runs(name: str, runs: int, seed: int, max_looks: int = 40) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    outcomes = [
        run_rollout(rng, PLAN, treatment=SCENARIOS[name], primary="error_rate", max_looks=max_looks)
        for _ in range(runs)
    ]
    figures = summarize(outcomes)
    print(f"\n{name}: {figures}")
    return figures


def test_aa_rollouts_are_rolled_back_at_most_alpha_of_the_time() -> None:
    """150 A/A rollouts, each looked at 30 times over its ramp: the share rolled back stays
    within alpha (always-valid tests, the regression family split across guardrails)."""
    assert _runs("A/A", 150, seed=1, max_looks=30)["rolled_back"] <= PLAN.alpha


def test_a_regression_exactly_at_the_margin_is_rolled_back_at_most_alpha_of_the_time() -> None:
    """The least favourable null: the error rate rises by exactly the margin."""
    figures = _runs("error rate at the margin (+1 point)", 80, seed=2, max_looks=30)
    assert figures["rolled_back"] <= PLAN.alpha


def test_a_five_point_error_rate_regression_is_caught() -> None:
    figures = _runs("error rate +5 points", 40, seed=3, max_looks=100)
    assert figures["rolled_back"] >= 0.95
    assert figures["median_treatment_units_to_rollback"] < 300


def test_a_doubled_p95_latency_is_caught_within_the_first_step() -> None:
    rng = np.random.default_rng(4)
    outcomes = [
        run_rollout(rng, PLAN, treatment=SCENARIOS["latency 2× (p95 and p99 2×)"],
                    primary="error_rate")
        for _ in range(40)
    ]  # fmt: skip
    print(f"\nlatency 2×: {summarize(outcomes)}")
    assert all(o.kind == "roll back" and o.step == 0 for o in outcomes)
    assert all(o.action.code.startswith("regressed:latency_p") for o in outcomes)
    assert "latency_p95" in {o.action.code.split(":")[1] for o in outcomes}
