"""CUPED (regression adjustment): variance reduction, fallback and additivity."""

from __future__ import annotations

import numpy as np
import pytest

from abplatform.core.stats import (
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    effect_moments,
    messages,
    welch_ttest,
)
from abplatform.core.stats.cuped import pooled_theta


def _cuped(post: np.ndarray, pre: np.ndarray) -> RegressionAdjustedStatistic:
    n = len(post)
    return RegressionAdjustedStatistic(
        n,
        SampleMeanStatistic(n, float(post.sum()), float((post**2).sum())),
        SampleMeanStatistic(n, float(pre.sum()), float((pre**2).sum())),
        float((post * pre).sum()),
    )


def test_pooled_theta_is_the_ols_slope_of_post_on_pre_over_both_arms() -> None:
    rng = np.random.default_rng(1)
    pre_a, pre_b = rng.normal(100, 20, 800), rng.normal(100, 20, 900)
    post_a = 0.7 * pre_a + rng.normal(30, 5, 800)
    post_b = 0.7 * pre_b + rng.normal(32, 5, 900)
    slope = np.polyfit(np.concatenate([pre_a, pre_b]), np.concatenate([post_a, post_b]), 1)[0]
    assert pooled_theta(_cuped(post_a, pre_a), _cuped(post_b, pre_b)) == pytest.approx(
        slope, rel=1e-9
    )


def test_cuped_standard_error_matches_adjusted_values_analysed_directly() -> None:
    rng = np.random.default_rng(2)
    pre_a, pre_b = rng.normal(100, 20, 800), rng.normal(100, 20, 900)
    post_a = 0.7 * pre_a + rng.normal(30, 5, 800)
    post_b = 0.7 * pre_b + rng.normal(32, 5, 900)
    a, b = _cuped(post_a, pre_a), _cuped(post_b, pre_b)
    theta = pooled_theta(a, b)
    adj_a, adj_b = post_a - theta * pre_a, post_b - theta * pre_b
    direct = effect_moments(
        SampleMeanStatistic(800, float(adj_a.sum()), float((adj_a**2).sum())),
        SampleMeanStatistic(900, float(adj_b.sum()), float((adj_b**2).sum())),
        "absolute",
    )
    cuped = effect_moments(a, b, "absolute")
    assert cuped.estimate == pytest.approx(direct.estimate, rel=1e-9)
    assert cuped.se == pytest.approx(direct.se, rel=1e-8)
    unadjusted = effect_moments(a.post, b.post, "absolute")
    assert cuped.se < unadjusted.se / 3


def test_cuped_without_pre_period_variance_falls_back_to_the_unadjusted_test() -> None:
    rng = np.random.default_rng(3)
    post_a, post_b = rng.normal(10, 2, 300), rng.normal(10.5, 2, 300)
    a, b = _cuped(post_a, np.zeros(300)), _cuped(post_b, np.zeros(300))
    cuped, plain = welch_ttest(a, b), welch_ttest(a.post, b.post)
    assert cuped.estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert cuped.se == pytest.approx(plain.se, rel=1e-12)
    assert cuped.p_value == pytest.approx(plain.p_value, rel=1e-9)


def test_cuped_statistics_add_across_slices() -> None:
    rng = np.random.default_rng(4)
    pre, post = rng.normal(5, 1, 100), rng.normal(5, 1, 100)
    whole = _cuped(post, pre)
    parts = _cuped(post[:40], pre[:40]) + _cuped(post[40:], pre[40:])
    assert parts.n == whole.n
    assert parts.covariance == pytest.approx(whole.covariance, rel=1e-9)
    assert parts.post.variance == pytest.approx(whole.post.variance, rel=1e-9)


def test_cuped_with_constant_post_metric_is_uninformative() -> None:
    post = np.full(50, 3.0)
    pre = np.arange(50.0)
    result = welch_ttest(_cuped(post, pre), _cuped(post + 1, pre))
    assert result.error_message == messages.ZERO_NEGATIVE_VARIANCE
    assert result.p_value == 1.0
