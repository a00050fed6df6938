"""The one-sided always-valid test: the normal-mixture boundary against published
reference values, its duality with the p-value, and its error rate over many looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abplatform.core.stats import SampleMeanStatistic
from abplatform.core.stats.onesided import (
    one_sided_boundary,
    one_sided_log_mixture,
    one_sided_rho,
    one_sided_test,
)
from abplatform.core.stats.sequential import sequential_halfwidth


def test_normal_mixtures_match_the_confseq_reference_values() -> None:
    """Values from the R reference implementation quoted in the confseq library's tests
    (gostevehoward/confseq, test/uniform_boundaries_unittest.cpp: V_OPT = 100,
    ALPHA_OPT = ALPHA = 0.05)."""
    rho = one_sided_rho(0.05, 100)
    assert one_sided_log_mixture(10, 100, rho) == pytest.approx(-0.06502391, abs=1e-5)
    assert one_sided_boundary(100, 0.05, 100) == pytest.approx(27.66071, abs=1e-5)
    # The two-sided boundary of the report's sequential test, in the same units
    # (TestTwoSidedNormalMixture: normal_mixture_bound(100, .05, 100, .05, false)).
    assert 100 * sequential_halfwidth(1.0, 100, 0.05, 100) == pytest.approx(30.35209, abs=1e-5)


def _arm(values: np.ndarray) -> SampleMeanStatistic:
    return SampleMeanStatistic(
        n=len(values), sum=float(values.sum()), sum_squares=float((values**2).sum())
    )


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_p_value_below_alpha_exactly_when_the_bound_clears_the_threshold(direction: str) -> None:
    rng = np.random.default_rng(3)
    for shift in np.linspace(-0.6, 0.6, 25):
        c, t = _arm(rng.normal(0, 1, 300)), _arm(rng.normal(shift, 1, 300))
        r = one_sided_test(c, t, threshold=0.1, direction=direction, alpha=0.05)  # type: ignore[arg-type]
        assert r.bound is not None
        beyond = r.bound > 0.1 if direction == "greater" else r.bound < 0.1
        assert r.rejected == beyond


def test_false_rejections_over_all_looks_stay_below_alpha() -> None:
    """500 null sequences (effect exactly at the threshold) × 50 looks: the share that
    ever rejects stays below alpha (a fixed-horizon one-sided z-test looked at as often
    would exceed it several times over)."""
    rng = np.random.default_rng(11)
    runs, looks, batch, threshold = 500, 50, 40, 0.2
    ever = 0
    naive = 0
    for _ in range(runs):
        c = rng.normal(0.0, 1.0, looks * batch)
        t = rng.normal(threshold, 1.0, looks * batch)
        hit = naive_hit = False
        for k in range(1, looks + 1):
            r = one_sided_test(_arm(c[: k * batch]), _arm(t[: k * batch]), threshold=threshold)
            hit |= r.rejected
            assert r.estimate is not None and r.se is not None
            naive_hit |= (r.estimate - threshold) / r.se > 1.645
        ever += hit
        naive += naive_hit
    assert ever / runs <= 0.05
    assert naive / runs > 0.10


def test_degenerate_data_give_no_verdict() -> None:
    empty = SampleMeanStatistic(n=0, sum=0.0, sum_squares=0.0)
    r = one_sided_test(empty, _arm(np.ones(5)))
    assert not r.informative and not r.rejected and r.bound is None and r.p_value == 1.0
    with pytest.raises(ValueError, match="direction"):
        one_sided_test(empty, empty, direction="up")  # type: ignore[arg-type]
    assert math.isfinite(one_sided_boundary(1e7, 0.001))
