"""Sufficient statistics add up, and ratio-metric variances follow the delta method."""

from __future__ import annotations

import numpy as np
import pytest

from abplatform.core.stats import (
    ProportionStatistic,
    RatioStatistic,
    SampleMeanStatistic,
    pool,
    welch_ttest,
)


def _mean_stat(x: np.ndarray) -> SampleMeanStatistic:
    return SampleMeanStatistic(len(x), float(x.sum()), float((x**2).sum()))


def _ratio_stat(m: np.ndarray, d: np.ndarray) -> RatioStatistic:
    return RatioStatistic(
        len(m),
        float(m.sum()),
        float((m**2).sum()),
        float(d.sum()),
        float((d**2).sum()),
        float((m * d).sum()),
    )


def test_sample_mean_statistic_matches_numpy_mean_and_unbiased_variance() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, 500)
    stat = _mean_stat(x)
    assert stat.mean == pytest.approx(x.mean(), rel=1e-12)
    assert stat.variance == pytest.approx(x.var(ddof=1), rel=1e-9)


def test_proportion_variance_is_p_times_one_minus_p_without_correction() -> None:
    stat = ProportionStatistic(28, 14)
    assert stat.mean == 0.5
    assert stat.variance == 0.25


def test_pooling_slices_equals_the_statistic_of_all_units() -> None:
    rng = np.random.default_rng(2)
    days = [rng.exponential(2.0, size) for size in (100, 250, 40)]
    pooled = pool(_mean_stat(x) for x in days)
    whole = _mean_stat(np.concatenate(days))
    assert pooled.n == whole.n == 390
    assert pooled.mean == pytest.approx(whole.mean, rel=1e-12)
    assert pooled.variance == pytest.approx(whole.variance, rel=1e-9)
    assert ProportionStatistic(10, 3) + ProportionStatistic(20, 7) == ProportionStatistic(30, 10)


def test_ratio_statistics_add_field_by_field() -> None:
    a = RatioStatistic(2, 1.0, 2.0, 3.0, 4.0, 5.0)
    b = RatioStatistic(3, 10.0, 20.0, 30.0, 40.0, 50.0)
    assert a + b == RatioStatistic(5, 11.0, 22.0, 33.0, 44.0, 55.0)
    with pytest.raises(TypeError):
        _ = a + ProportionStatistic(1, 1)
    with pytest.raises(ValueError):
        pool([])


def test_ratio_variance_equals_variance_of_the_linearised_per_user_residual() -> None:
    # Delta method: Var(R) ~ Var(m - R d) / (n mu_d^2); exact identity on sample moments.
    rng = np.random.default_rng(3)
    requests = rng.poisson(5, 400) + 1
    latency_total = requests * rng.lognormal(5, 0.3, 400) + rng.normal(0, 50, 400)
    stat = _ratio_stat(latency_total, requests.astype(float))
    ratio = latency_total.sum() / requests.sum()
    residual = (latency_total - ratio * requests) / requests.mean()
    assert stat.mean == pytest.approx(ratio, rel=1e-12)
    assert stat.variance == pytest.approx(residual.var(ddof=1), rel=1e-8)


def test_ratio_standard_error_matches_monte_carlo_spread_of_the_ratio() -> None:
    """1000 simulated arms of 500 users: correlated requests/latency per user."""
    rng = np.random.default_rng(4)
    sims, users = 1000, 500
    requests = rng.poisson(4, (sims, users)) + 1
    user_speed = rng.lognormal(5, 0.4, (sims, users))  # users differ: clustered latency
    totals = requests * user_speed
    ratios = totals.sum(axis=1) / requests.sum(axis=1)
    ses = [
        (_ratio_stat(totals[i], requests[i].astype(float)).variance / users) ** 0.5
        for i in range(sims)
    ]
    assert float(np.mean(ses)) == pytest.approx(float(ratios.std(ddof=1)), rel=0.08)


def test_ratio_metric_without_covariance_term_would_misstate_the_standard_error() -> None:
    rng = np.random.default_rng(5)
    requests = (rng.poisson(6, 300) + 1).astype(float)
    errors = rng.binomial(requests.astype(int), 0.05).astype(float)
    stat = _ratio_stat(errors, requests)
    mu_m, mu_d = errors.mean(), requests.mean()
    no_cov = errors.var(ddof=1) / mu_d**2 + requests.var(ddof=1) * mu_m**2 / mu_d**4
    assert stat.covariance > 0
    assert stat.variance < no_cov * 0.9


def test_welch_ttest_on_ratio_metrics_reports_the_error_rate_lift() -> None:
    control = RatioStatistic(1000, 50.0, 60.0, 5000.0, 26000.0, 270.0)
    treatment = RatioStatistic(1000, 80.0, 100.0, 5000.0, 26000.0, 430.0)
    result = welch_ttest(control, treatment, difference="absolute")
    assert result.informative
    assert result.estimate == pytest.approx(0.006, abs=1e-12)
    assert control.mean == pytest.approx(0.01, abs=1e-12)
