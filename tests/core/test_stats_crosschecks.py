"""Cross-checks against independent implementations in scipy and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from abplatform.core.stats import (
    SampleMeanStatistic,
    benjamini_hochberg,
    holm_bonferroni,
    srm_test,
    welch_ttest,
)

arm = st.tuples(
    st.integers(min_value=2, max_value=100_000),  # n
    st.floats(min_value=-1e3, max_value=1e3),  # mean
    st.floats(min_value=0.1, max_value=1e3),  # sd
)


def _stat(n: int, mean: float, sd: float) -> SampleMeanStatistic:
    """Statistic whose sample mean and sample sd are exactly ``mean`` and ``sd``."""
    return SampleMeanStatistic(n, n * mean, sd**2 * (n - 1) + n * mean**2)


@settings(max_examples=200, deadline=None)
@given(a=arm, b=arm, alternative=st.sampled_from(["two-sided", "greater", "less"]))
def test_welch_absolute_p_value_equals_scipy_ttest_ind_from_stats(a, b, alternative) -> None:
    ours = welch_ttest(_stat(*a), _stat(*b), difference="absolute", alternative=alternative)
    # scipy tests mean1 - mean2, so pass treatment first.
    ref = sps.ttest_ind_from_stats(
        b[1], b[2], b[0], a[1], a[2], a[0], equal_var=False, alternative=alternative
    )
    assert ours.informative
    assert ours.estimate / ours.se == pytest.approx(ref.statistic, rel=1e-6, abs=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)


def test_welch_interval_equals_scipy_confidence_interval_on_raw_data() -> None:
    rng = np.random.default_rng(7)
    x_a = rng.normal(10.0, 2.0, 300)
    x_b = rng.normal(10.4, 3.0, 250)
    a = SampleMeanStatistic(len(x_a), float(x_a.sum()), float((x_a**2).sum()))
    b = SampleMeanStatistic(len(x_b), float(x_b.sum()), float((x_b**2).sum()))
    for alpha in (0.05, 0.1, 0.01):
        ours = welch_ttest(a, b, difference="absolute", alpha=alpha)
        ref = sps.ttest_ind(x_b, x_a, equal_var=False)
        ci = ref.confidence_interval(confidence_level=1 - alpha)
        assert ours.ci == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert ours.dof == pytest.approx(ref.df, rel=1e-9)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 5000), st.floats(0.05, 1.0)), min_size=2, max_size=6
    ).filter(lambda rows: sum(o for o, _ in rows) > 0)
)
def test_srm_chi2_and_p_value_equal_scipy_chisquare(data) -> None:
    observed = [o for o, _ in data]
    weights = [w for _, w in data]
    total = sum(observed)
    f_exp = [total * w / sum(weights) for w in weights]
    ref = sps.chisquare(observed, f_exp)
    ours = srm_test(observed, weights)
    assert ours.chi2 == pytest.approx(ref.statistic, rel=1e-9, abs=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    assert ours.dof == len(observed) - 1


def test_srm_skips_zero_weight_arms_like_gbstats() -> None:
    ours = srm_test([1000, 1200, 37], [0.5, 0.5, 0.0])
    ref = sps.chisquare([1000, 1200], [1100, 1100])
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.expected == (1100.0, 1100.0, 0.0)
    assert ours.dof == 1


p_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)  # statsmodels' holm takes ~30 ms per call
@given(p=p_lists)
def test_holm_matches_statsmodels_multipletests_holm(p) -> None:
    ref = multipletests(p, method="holm")[1]
    assert holm_bonferroni(p) == pytest.approx(list(ref), abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(p=p_lists)
def test_benjamini_hochberg_matches_statsmodels_fdr_bh(p) -> None:
    ref = multipletests(p, method="fdr_bh")[1]
    assert benjamini_hochberg(p) == pytest.approx(list(ref), abs=1e-12)
