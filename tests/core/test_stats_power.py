"""Sample size and MDE, cross-checked with statsmodels' NormalIndPower / TTestIndPower.

Tolerances: against ``NormalIndPower`` our sample size is its continuous answer rounded
up (solver tolerance 1e-6 units) and achieved power agrees to 1e-12; ``TTestIndPower``
(the exact t-based answer) needs 0-2 more units per arm than the normal answer.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from abplatform.core.stats import (
    Baseline,
    SampleMeanStatistic,
    achieved_power,
    effect_moments,
    minimum_detectable_effect,
    sample_size_per_variant,
)


@settings(max_examples=60, deadline=None)
@given(
    sd=st.floats(min_value=0.5, max_value=50.0),
    effect_size=st.floats(min_value=0.02, max_value=1.0),  # statsmodels fails when n < 2
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    power=st.sampled_from([0.8, 0.9]),
)
def test_mean_sample_size_matches_normal_ind_power(sd, effect_size, alpha, power) -> None:
    ours = sample_size_per_variant(
        Baseline.for_mean(100.0, sd),
        effect_size * sd,
        difference="absolute",
        alpha=alpha,
        power=power,
    )
    ref = NormalIndPower().solve_power(effect_size=effect_size, alpha=alpha, power=power)
    assert math.ceil(ref - 1e-4) <= ours <= math.ceil(ref + 1e-4)


def test_mean_sample_size_is_within_two_units_of_ttest_ind_power() -> None:
    ours = sample_size_per_variant(Baseline.for_mean(100.0, 20.0), 2.0, difference="absolute")
    ref = TTestIndPower().solve_power(effect_size=0.1, alpha=0.05, power=0.8)
    assert ours == 1570
    assert 0 <= ref - (ours - 1) <= 2


def test_proportion_sample_size_matches_textbook_and_normal_ind_power() -> None:
    # 10% -> 11% (absolute +1 pp) with the baseline variance in both arms (GrowthBook's
    # convention): 7.8489 * 2 * 0.09 / 1e-4 = 14128.0
    baseline = Baseline.for_proportion(0.10)
    ours = sample_size_per_variant(baseline, 0.01, difference="absolute")
    h = 0.01 / math.sqrt(0.1 * 0.9)
    ref = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8)
    assert ours == 14128 == math.ceil(ref)


def test_achieved_power_matches_normal_ind_power_including_the_far_tail() -> None:
    baseline = Baseline.for_mean(100.0, 20.0)
    for n in (50, 500, 1000, 5000):
        ours = achieved_power(baseline, 2.0, n, difference="absolute")
        assert ours == pytest.approx(NormalIndPower().power(0.1, n, 0.05), abs=1e-12)
    one_sided = achieved_power(baseline, 2.0, 1000, difference="absolute", sides="one-sided")
    ref = NormalIndPower().power(0.1, 1000, 0.05, alternative="larger")
    assert one_sided == pytest.approx(ref, abs=1e-12)


def test_split_alpha_is_a_bonferroni_split_over_the_treatments() -> None:
    baseline = Baseline.for_mean(100.0, 20.0)
    three_arms = sample_size_per_variant(
        baseline, 2.0, difference="absolute", n_variants=3, split_alpha=True
    )
    halved = sample_size_per_variant(baseline, 2.0, difference="absolute", alpha=0.025)
    assert three_arms == halved == 1902


def test_relative_sample_size_uses_the_delta_method_variance_of_the_analysis() -> None:
    baseline = Baseline.for_mean(50.0, 10.0)
    n = sample_size_per_variant(baseline, 0.05, difference="relative")
    # The analysis' relative se at exactly these population moments:
    a = SampleMeanStatistic(n, n * 50.0, 100.0 * (n - 1) + n * 50.0**2)
    b = SampleMeanStatistic(n, n * 52.5, 100.0 * (n - 1) + n * 52.5**2)
    se = effect_moments(a, b, "relative").se
    z = 1.959963984540054 + 0.8416212335729143
    assert 0.05 / se == pytest.approx(z, rel=2e-3)  # n is rounded up
    assert 0.05 / se >= z


@pytest.mark.parametrize(
    ("baseline", "difference"),
    [
        (Baseline.for_mean(100.0, 20.0), "absolute"),
        (Baseline.for_mean(100.0, 20.0), "relative"),
        (Baseline.for_proportion(0.1), "absolute"),
        (Baseline.for_proportion(0.1), "relative"),
    ],
)
def test_minimum_detectable_effect_inverts_sample_size(baseline, difference) -> None:
    mde = minimum_detectable_effect(baseline, 5000, difference=difference)
    assert achieved_power(baseline, mde, 5000, difference=difference) == pytest.approx(
        0.8, abs=1e-5
    )
    assert sample_size_per_variant(baseline, mde * 1.0001, difference=difference) <= 5000


def test_mde_is_infinite_when_no_effect_reaches_the_power() -> None:
    tiny = minimum_detectable_effect(Baseline.for_mean(1.0, 100.0), 10, difference="relative")
    assert tiny == math.inf


def test_invalid_power_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError):
        Baseline.for_proportion(1.2)
    with pytest.raises(ValueError):
        Baseline.for_mean(1.0, 0.0)
    with pytest.raises(ValueError):
        sample_size_per_variant(Baseline.for_proportion(0.95), 0.1, difference="absolute")
    with pytest.raises(ValueError):
        sample_size_per_variant(Baseline.for_mean(1.0, 1.0), 0.1, n_variants=1)
