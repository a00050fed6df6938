"""Bayesian engine: posterior, chance to win and risk against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from abplatform.core.stats import (
    GaussianPrior,
    SampleMeanStatistic,
    bayesian_test,
    effect_moments,
)
from abplatform.core.stats.bayesian import expected_positive_part

C8_A = SampleMeanStatistic(n=10, sum=100, sum_squares=1002.25)
C8_B = SampleMeanStatistic(n=10, sum=105, sum_squares=1111.5)


def test_flat_prior_posterior_is_the_estimate_and_its_standard_error() -> None:
    moments = effect_moments(C8_A, C8_B, "relative")
    result = bayesian_test(C8_A, C8_B)
    assert result.estimate == moments.estimate
    assert result.sd == moments.se
    assert result.chance_to_win == pytest.approx(sps.norm.cdf(moments.estimate / moments.se))


def test_proper_prior_posterior_matches_numerical_integration() -> None:
    moments = effect_moments(C8_A, C8_B, "relative")
    prior = GaussianPrior(mean=0.0, sd=0.03)
    result = bayesian_test(C8_A, C8_B, prior=prior)

    def density(x: float) -> float:
        return sps.norm.pdf(moments.estimate, x, moments.se) * sps.norm.pdf(x, 0.0, 0.03)

    z, _ = integrate.quad(density, -1, 1, points=[0.0, 0.05])
    mean, _ = integrate.quad(lambda x: x * density(x) / z, -1, 1, points=[0.0, 0.05])
    second, _ = integrate.quad(lambda x: x * x * density(x) / z, -1, 1, points=[0.0, 0.05])
    win, _ = integrate.quad(lambda x: density(x) / z, 0, 1)
    assert result.estimate == pytest.approx(mean, abs=1e-8)
    assert result.sd == pytest.approx(math.sqrt(second - mean**2), abs=1e-8)
    assert result.chance_to_win == pytest.approx(win, abs=1e-8)
    # Shrinkage: the prior pulls the lift towards 0 and narrows the interval.
    assert 0 < result.estimate < moments.estimate
    assert result.sd < moments.se


def test_risk_equals_truncated_normal_means_times_tail_probabilities() -> None:
    for mu, sigma in [(0.05, 0.0357), (-0.074, 0.0507), (0.0, 1.0), (3.0, 0.5)]:
        above = sps.norm.sf(0, mu, sigma) * sps.truncnorm.mean((0 - mu) / sigma, np.inf, mu, sigma)
        below = sps.norm.cdf(0, mu, sigma) * sps.truncnorm.mean(
            -np.inf, (0 - mu) / sigma, mu, sigma
        )
        assert expected_positive_part(mu, sigma) == pytest.approx(above, abs=1e-12)
        assert expected_positive_part(-mu, sigma) == pytest.approx(-below, abs=1e-12)


def test_risk_difference_equals_the_posterior_mean() -> None:
    result = bayesian_test(C8_A, C8_B, alpha=0.1)
    assert result.risk is not None
    # E[max(X,0)] - E[max(-X,0)] = E[X]
    assert result.risk[0] - result.risk[1] == pytest.approx(result.estimate, abs=1e-15)
    assert result.ci is not None
    assert result.ci[1] - result.ci[0] == pytest.approx(2 * 1.6448536269514722 * result.sd)


def test_comparator_label_is_carried_on_the_result() -> None:
    result = bayesian_test(C8_A, C8_B, comparator="v2 vs v1 (control)")
    assert result.comparator == "v2 vs v1 (control)"
    assert result.difference_type == "relative"


def test_prior_with_non_positive_sd_is_rejected() -> None:
    with pytest.raises(ValueError):
        GaussianPrior(0.0, 0.0)
