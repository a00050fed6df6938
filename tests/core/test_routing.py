"""The routing decision in-process: who serves a unit, and why."""

from __future__ import annotations

import pytest
from scipy import stats

from abplatform.core import assignment
from abplatform.core.routing import (
    NotServingError,
    RouteReason,
    RoutingConfig,
    RoutingVariant,
    decide_route,
)

VARIANTS = (
    RoutingVariant(1, "control", "v1", "abplatform/model-v1", True),
    RoutingVariant(2, "treatment", "v2", "abplatform/model-v2", False),
)


def config(
    weights: tuple[float, ...] = (0.5, 0.5),
    *,
    status: str = "running",
    coverage: float = 1.0,
    winner: int | None = None,
) -> RoutingConfig:
    return RoutingConfig(
        experiment_id=1,
        name="exp",
        status=status,
        version=1,
        phase_id=1,
        hash_seed="seed",
        hash_version=2,
        coverage=coverage,
        allocation=assignment.fresh_allocation(list(weights)),
        variants=VARIANTS,
        winner_index=winner,
        fallback_to_control=False,
    )


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_draft_and_stopped_experiments_serve_nobody(status: str) -> None:
    with pytest.raises(NotServingError, match=f"is {status}; only running or concluded"):
        decide_route(config(status=status), "u1")


def test_the_same_unit_always_gets_the_same_decision() -> None:
    cfg = config()
    assert all(decide_route(cfg, f"u{i}") == decide_route(cfg, f"u{i}") for i in range(200))


def test_a_concluded_experiment_sends_everyone_to_the_winner() -> None:
    cfg = config(status="concluded", winner=1)
    decisions = {decide_route(cfg, f"u{i}") for i in range(100)}
    assert {(d.target.key, d.reason, d.in_experiment) for d in decisions} == {
        ("treatment", RouteReason.WINNER, True)
    }


def test_units_outside_the_coverage_get_the_control_and_are_not_analysed() -> None:
    cfg = config(coverage=0.3)
    decisions = [decide_route(cfg, f"u{i}") for i in range(10_000)]
    out = [d for d in decisions if not d.in_experiment]
    assert {(d.target.key, d.reason, d.assigned) for d in out} == {
        ("control", RouteReason.NOT_ENROLLED, None)
    }
    assert len(out) / len(decisions) == pytest.approx(0.7, abs=0.02)


def test_assignment_follows_the_split_weights() -> None:
    cfg = config((0.2, 0.8))
    keys = [decide_route(cfg, f"user-{i}").target.key for i in range(100_000)]
    observed = [keys.count("control"), keys.count("treatment")]
    assert stats.chisquare(observed, [20_000, 80_000]).pvalue > 0.001
