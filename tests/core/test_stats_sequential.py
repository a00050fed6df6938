"""Always-valid sequential test: formula checks and peeking simulations (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abplatform.core.stats import (
    ProportionStatistic,
    SampleMeanStatistic,
    sequential_test,
    welch_ttest,
)
from abplatform.core.stats.sequential import (
    sequential_halfwidth,
    sequential_p_value,
    sequential_rho,
)

ALPHA = 0.05
N_EXPERIMENTS, N_LOOKS, UNITS_PER_LOOK = 500, 20, 100


def _peeking_runs(
    seed: int, effect: float, n_experiments: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (n, sum, sum_squares) per experiment, arm and look for N(10, 2) data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, size=(n_experiments, 2, N_LOOKS, UNITS_PER_LOOK))
    x[:, 1] += effect
    sums = np.cumsum(x.sum(axis=-1), axis=-1)
    squares = np.cumsum((x**2).sum(axis=-1), axis=-1)
    n = UNITS_PER_LOOK * np.arange(1, N_LOOKS + 1)
    return n, sums, squares


def _arms(n: int, sums: np.ndarray, squares: np.ndarray, e: int, look: int):
    a = SampleMeanStatistic(int(n), float(sums[e, 0, look]), float(squares[e, 0, look]))
    b = SampleMeanStatistic(int(n), float(sums[e, 1, look]), float(squares[e, 1, look]))
    return a, b


def test_aa_peeking_twenty_times_keeps_sequential_false_positives_within_alpha() -> None:
    """500 A/A experiments, 20 looks of +100 units per arm each.

    Observed with seed 20240601: sequential FPR over all looks 0.012; the fixed-horizon
    Welch test peeked at every look 0.238 (its final look alone: 0.054).
    """
    n, sums, squares = _peeking_runs(20240601, effect=0.0, n_experiments=N_EXPERIMENTS)
    seq = np.zeros((N_EXPERIMENTS, N_LOOKS), dtype=bool)
    fixed = np.zeros_like(seq)
    for e in range(N_EXPERIMENTS):
        for look in range(N_LOOKS):
            a, b = _arms(n[look], sums, squares, e, look)
            seq[e, look] = sequential_test(a, b, alpha=ALPHA).p_value < ALPHA
            fixed[e, look] = welch_ttest(a, b, alpha=ALPHA).p_value < ALPHA
    sequential_fpr = seq.any(axis=1).mean()
    peeked_fpr = fixed.any(axis=1).mean()
    final_look_fpr = fixed[:, -1].mean()
    assert sequential_fpr <= ALPHA + 0.02
    assert sequential_fpr == pytest.approx(0.012, abs=0.01)
    assert peeked_fpr > ALPHA
    assert peeked_fpr == pytest.approx(0.238, abs=0.05)  # about 5x the nominal alpha
    assert final_look_fpr == pytest.approx(ALPHA, abs=0.02)


def test_confidence_sequence_covers_the_true_effect_at_every_look() -> None:
    n, sums, squares = _peeking_runs(7, effect=0.3, n_experiments=300)
    missed = 0
    for e in range(300):
        for look in range(N_LOOKS):
            a, b = _arms(n[look], sums, squares, e, look)
            ci = sequential_test(a, b, difference="absolute").ci
            assert ci is not None
            if not ci[0] <= 0.3 <= ci[1]:
                missed += 1
                break
    assert missed / 300 <= ALPHA + 0.02


def test_rho_matches_the_closed_form_for_alpha_005_and_default_tuning() -> None:
    log_term = -2 * math.log(0.05)
    expected = math.sqrt((log_term + math.log(log_term + 1)) / 5000)
    assert sequential_rho(0.05) == pytest.approx(expected, rel=1e-15)
    assert sequential_rho(0.05) == pytest.approx(0.0398401, abs=1e-7)  # sqrt(7.936163 / 5000)


def test_halfwidth_reproduces_c6_interval() -> None:
    # stats_cases.md C6: se 0.03386 with n = 6461 -> CI half-width 0.10289.
    result = sequential_test(ProportionStatistic(3000, 1396), ProportionStatistic(3461, 2422))
    assert result.ci is not None
    half = sequential_halfwidth(result.se**2 * 6461, 6461, 0.05)
    assert half == pytest.approx((result.ci[1] - result.ci[0]) / 2, rel=1e-12)
    assert half == pytest.approx(0.102885, abs=2e-5)


@settings(max_examples=200, deadline=None)
@given(
    z=st.floats(min_value=-8.0, max_value=8.0),
    n=st.integers(min_value=10, max_value=10**7),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_sequential_p_value_is_below_alpha_exactly_when_the_sequence_excludes_zero(
    z: float, n: int, alpha: float
) -> None:
    se = 1.0
    half = sequential_halfwidth(se**2 * n, n, alpha)
    excludes = abs(z * se) > half
    p = sequential_p_value(z, n, alpha)
    assert 0.0 <= p <= 1.0
    if abs(abs(z * se) - half) > 1e-9:
        assert (p < alpha) == excludes


def test_confidence_sequence_is_wider_than_the_fixed_horizon_interval() -> None:
    a = SampleMeanStatistic(3407, 1396.87, 52377.9767)
    b = SampleMeanStatistic(3461, 2422.7, 134698.29)
    seq, fixed = sequential_test(a, b), welch_ttest(a, b)
    assert seq.ci is not None and fixed.ci is not None
    assert seq.ci[0] < fixed.ci[0] and seq.ci[1] > fixed.ci[1]
    assert seq.p_value > fixed.p_value
    assert seq.estimate == pytest.approx(fixed.estimate, rel=1e-15)


def test_larger_tuning_parameter_gives_a_tighter_sequence_at_large_n() -> None:
    a = ProportionStatistic(50_000, 20_000)
    b = ProportionStatistic(50_000, 20_400)
    small, large = sequential_test(a, b, tuning=1000), sequential_test(a, b, tuning=100_000)
    assert small.ci is not None and large.ci is not None
    assert large.ci[1] - large.ci[0] < small.ci[1] - small.ci[0]
