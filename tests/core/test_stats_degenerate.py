"""Degenerate data never raises: each test returns an uninformative, labelled result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abplatform.core.stats import (
    LatencyBins,
    LatencyHistogram,
    ProportionStatistic,
    RatioStatistic,
    SampleMeanStatistic,
    Statistic,
    bayesian_test,
    messages,
    sequential_test,
    srm_test,
    welch_ttest,
)

HEALTHY = SampleMeanStatistic(n=50, sum=500.0, sum_squares=5200.0)

DEGENERATE_PAIRS: dict[str, tuple[Statistic, Statistic, str]] = {
    "empty_control_arm": (
        SampleMeanStatistic(0, 0.0, 0.0),
        HEALTHY,
        messages.NO_UNITS_IN_VARIATION,
    ),
    "empty_treatment_arm": (
        HEALTHY,
        SampleMeanStatistic(0, 0.0, 0.0),
        messages.NO_UNITS_IN_VARIATION,
    ),
    "single_unit_per_arm": (
        SampleMeanStatistic(1, 3.0, 9.0),
        SampleMeanStatistic(1, 4.0, 16.0),
        messages.ZERO_NEGATIVE_VARIANCE,
    ),
    "constant_values_in_both_arms": (
        SampleMeanStatistic(3, 0.3, 0.03),  # three units of 0.1: ss - s^2/n is ~1e-18
        SampleMeanStatistic(4, 0.8, 0.16),  # four units of 0.2
        messages.ZERO_NEGATIVE_VARIANCE,
    ),
    "no_conversions_in_either_arm": (
        ProportionStatistic(100, 0),
        ProportionStatistic(100, 0),
        messages.ZERO_NEGATIVE_VARIANCE,
    ),
    "infinite_sum_of_squares": (
        SampleMeanStatistic(50, 500.0, math.inf),  # an overflowed aggregate
        HEALTHY,
        messages.NON_FINITE_DATA,
    ),
    "nan_sum": (
        HEALTHY,
        SampleMeanStatistic(50, math.nan, 5200.0),
        messages.NON_FINITE_DATA,
    ),
    "control_mean_zero_for_relative_lift": (
        SampleMeanStatistic(4, 0.0, 8.0),  # values -1, -1, 1, 1 (e.g. a net score)
        HEALTHY,
        messages.BASELINE_VARIATION_ZERO,
    ),
    "ratio_with_no_requests_in_control": (
        RatioStatistic(10, 0.0, 0.0, 0.0, 0.0, 0.0),
        RatioStatistic(10, 500.0, 30000.0, 20.0, 50.0, 1100.0),
        messages.RATIO_DENOMINATOR_ZERO,
    ),
}


@pytest.mark.parametrize("case", DEGENERATE_PAIRS, ids=list(DEGENERATE_PAIRS))
def test_welch_ttest_on_degenerate_data_returns_p_one_and_no_interval(case: str) -> None:
    control, treatment, message = DEGENERATE_PAIRS[case]
    result = welch_ttest(control, treatment, comparator="v2 vs v1")
    assert result.error_message == message
    assert not result.informative and not result.significant
    assert result.p_value == 1.0
    assert result.ci is None
    assert math.isnan(result.estimate) and math.isnan(result.se)
    assert result.comparator == "v2 vs v1"


@pytest.mark.parametrize("case", DEGENERATE_PAIRS, ids=list(DEGENERATE_PAIRS))
def test_sequential_test_on_degenerate_data_returns_p_one_and_no_interval(case: str) -> None:
    control, treatment, message = DEGENERATE_PAIRS[case]
    result = sequential_test(control, treatment)
    assert result.error_message == message
    assert result.p_value == 1.0
    assert result.ci is None
    assert result.method == "sequential"


@pytest.mark.parametrize("case", DEGENERATE_PAIRS, ids=list(DEGENERATE_PAIRS))
def test_bayesian_test_on_degenerate_data_returns_even_chance_to_win(case: str) -> None:
    control, treatment, message = DEGENERATE_PAIRS[case]
    result = bayesian_test(control, treatment)
    assert result.error_message == message
    assert result.chance_to_win == 0.5
    assert result.ci is None and result.risk is None
    assert math.isnan(result.estimate)


def test_control_mean_zero_is_still_testable_on_the_absolute_scale() -> None:
    control, treatment, _ = DEGENERATE_PAIRS["control_mean_zero_for_relative_lift"]
    result = welch_ttest(control, treatment, difference="absolute")
    assert result.informative
    assert result.estimate == pytest.approx(10.0, abs=1e-12)
    # se^2 = v_A/n_A + v_B/n_B = (8/3)/4 + ((5200 - 5000)/49)/50
    assert result.se == pytest.approx(math.sqrt(8 / 12 + 200 / 49 / 50), rel=1e-12)


def test_single_unit_statistics_report_zero_variance() -> None:
    stat = SampleMeanStatistic(1, 7.0, 49.0)
    assert stat.variance == 0.0
    assert stat.has_zero_variance
    assert SampleMeanStatistic(0, 0.0, 0.0).mean == 0.0
    assert ProportionStatistic(0, 0).mean == 0.0


def test_srm_on_an_empty_experiment_returns_p_one_unflagged() -> None:
    result = srm_test([0, 0], [0.5, 0.5])
    assert result.p_value == 1.0
    assert not result.flagged
    assert result.error_message == messages.NO_UNITS_IN_EXPERIMENT


def test_srm_with_a_single_weighted_arm_returns_p_one_unflagged() -> None:
    result = srm_test([120, 3], [1.0, 0.0])
    assert result.p_value == 1.0
    assert result.dof == 0
    assert not result.flagged
    assert result.error_message == messages.SINGLE_WEIGHTED_ARM


def test_p99_from_too_few_requests_is_uninformative() -> None:
    rng = np.random.default_rng(1)
    small = LatencyHistogram.from_values(rng.lognormal(5, 0.5, 200)).quantile(0.99)
    big = LatencyHistogram.from_values(rng.lognormal(5, 0.5, 5000)).quantile(0.99)
    assert small.unusable_reason == messages.QUANTILE_INSUFFICIENT_DATA
    result = welch_ttest(small, big, difference="absolute")
    assert result.error_message == messages.QUANTILE_INSUFFICIENT_DATA
    assert result.p_value == 1.0


def test_quantile_in_the_overflow_bucket_is_uninformative() -> None:
    bins = LatencyBins(lower=1.0, upper=1000.0, n_bins=60)
    rng = np.random.default_rng(2)
    slow = LatencyHistogram.from_values(rng.uniform(800, 1500, 2000), bins).quantile(0.95)
    fast = LatencyHistogram.from_values(rng.uniform(100, 500, 2000), bins).quantile(0.95)
    assert slow.unusable_reason == messages.QUANTILE_OUT_OF_RANGE
    result = bayesian_test(fast, slow)
    assert result.error_message == messages.QUANTILE_OUT_OF_RANGE
    assert result.chance_to_win == 0.5


def test_quantile_of_an_empty_arm_is_reported_as_no_units() -> None:
    empty = LatencyHistogram.from_values([]).quantile(0.5)
    full = LatencyHistogram.from_values(np.full(100, 50.0) * np.linspace(1, 2, 100)).quantile(0.5)
    result = welch_ttest(empty, full)
    assert result.error_message == messages.NO_UNITS_IN_VARIATION
    assert empty.mean == 0.0 and empty.variance == 0.0


def test_all_error_messages_are_distinct_strings_with_a_sentence() -> None:
    assert len(messages.ALL_MESSAGES) == 9
    assert set(messages.SENTENCES) == messages.ALL_MESSAGES
    assert all(" " in messages.sentence(m) for m in messages.ALL_MESSAGES)
    assert messages.BASELINE_VARIATION_ZERO == "ZERO_NEGATIVE_BASELINE_VARIATION"
    assert messages.ZERO_NEGATIVE_VARIANCE == "ZERO_NEGATIVE_VARIANCE"


def test_invalid_configuration_raises_value_error_not_a_silent_result() -> None:
    with pytest.raises(ValueError):
        welch_ttest(HEALTHY, HEALTHY, alpha=1.5)
    with pytest.raises(ValueError):
        welch_ttest(HEALTHY, HEALTHY, alternative="bigger")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        welch_ttest(HEALTHY, HEALTHY, difference="percent")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        welch_ttest(HEALTHY, ProportionStatistic(10, 5))
    with pytest.raises(ValueError):
        ProportionStatistic(10, 11)
    with pytest.raises(ValueError):
        SampleMeanStatistic(-1, 0.0, 0.0)
