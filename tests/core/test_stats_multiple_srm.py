"""Family-wide p-value correction and the SRM alert thresholds."""

from __future__ import annotations

import math

import pytest

from abplatform.core.stats import (
    ProportionStatistic,
    SampleMeanStatistic,
    adjust_p_values,
    correct_family,
    holm_bonferroni,
    sequential_test,
    srm_test,
    welch_ttest,
)

CONTROL = SampleMeanStatistic(3407, 1396.87, 52377.9767)


def _family():
    treatments = {
        ("v2", "latency"): SampleMeanStatistic(3461, 2422.7, 134698.29),  # p 0.0619
        ("v3", "latency"): SampleMeanStatistic(3461, 1500.0, 60000.0),
        ("v2", "clicks"): SampleMeanStatistic(3400, 1700.0, 60000.0),
        ("v3", "clicks"): SampleMeanStatistic(0, 0.0, 0.0),  # empty arm: uninformative
    }
    return {
        key: welch_ttest(CONTROL, stat, comparator=f"{key[0]} vs control")
        for key, stat in treatments.items()
    }


def test_correct_family_adjusts_informative_results_in_input_order() -> None:
    family = _family()
    corrected = correct_family(family, "holm")
    assert list(corrected) == list(family)
    keys = [k for k, r in family.items() if r.informative]
    expected = holm_bonferroni([family[k].p_value for k in keys])
    assert [corrected[k].adjusted_p_value for k in keys] == pytest.approx(expected, abs=1e-15)
    assert corrected[("v3", "clicks")].adjusted_p_value == 1.0
    assert corrected[("v3", "clicks")].adjusted_ci is None
    assert all(corrected[k].p_value == family[k].p_value for k in family)


def test_adjusted_interval_excludes_zero_exactly_when_adjusted_p_is_below_alpha() -> None:
    for method in ("holm", "bh"):
        for result in correct_family(_family(), method).values():
            if not result.informative:
                continue
            assert result.adjusted_ci is not None and result.adjusted_p_value is not None
            excludes_zero = not result.adjusted_ci[0] <= 0 <= result.adjusted_ci[1]
            assert excludes_zero == (result.adjusted_p_value < result.alpha)
            assert result.significant == (result.adjusted_p_value < result.alpha)


def test_no_correction_keeps_p_values_and_reproduces_the_original_interval() -> None:
    for key, result in correct_family(_family(), None).items():
        if not result.informative:
            continue
        assert result.adjusted_p_value == result.p_value, key
        assert result.adjusted_ci == pytest.approx(result.ci, rel=1e-9), key


def test_p_value_of_one_gives_an_unbounded_adjusted_interval_and_sequential_gives_none() -> None:
    seq = sequential_test(ProportionStatistic(3000, 1396), ProportionStatistic(3461, 2422))
    fixed = welch_ttest(CONTROL, SampleMeanStatistic(3407, 1396.87, 52377.9767))
    corrected = correct_family({"seq": seq, "fixed": fixed}, "bh")
    assert corrected["seq"].adjusted_ci is None
    assert corrected["seq"].adjusted_p_value == pytest.approx(2 * seq.p_value, rel=1e-12)
    assert corrected["fixed"].adjusted_p_value == pytest.approx(1.0, abs=1e-12)
    assert corrected["fixed"].adjusted_ci == (-math.inf, math.inf)


def test_adjust_p_values_rejects_unknown_methods_and_invalid_p() -> None:
    assert adjust_p_values([0.2, 0.01], None) == [0.2, 0.01]
    assert adjust_p_values([], "bh") == []
    with pytest.raises(ValueError):
        adjust_p_values([0.1], "bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        holm_bonferroni([math.nan])
    with pytest.raises(ValueError):
        holm_bonferroni([1.5])


def test_srm_needs_enough_units_in_total_not_in_every_arm() -> None:
    # GrowthBook's getSRMHealthData: enough traffic once the total reaches 8 × arms.
    # p = 0.000112 from the 1000 vs 1200 imbalance; the small third arm does not excuse it.
    result = srm_test([1000, 1200, 7], [0.5, 0.5, 0.003])
    assert result.p_value == pytest.approx(0.000111516, abs=1e-9)
    assert result.flagged
    assert not srm_test([1000, 1200, 7], [0.5, 0.5, 0.003], min_count=800).flagged
    # Too little traffic in total: 15 units over 2 arms (< 16), however lopsided.
    assert not srm_test([15, 0], [0.5, 0.5]).flagged
    assert srm_test([16, 0], [0.5, 0.5]).flagged


def test_srm_threshold_is_a_parameter() -> None:
    result = srm_test([1000, 1100], [0.5, 0.5])  # chi2 4.76, p 0.029
    assert result.chi2 == pytest.approx(2 * 50**2 / 1050, rel=1e-12)
    assert result.p_value == pytest.approx(0.0291, abs=1e-4)
    assert not result.flagged
    assert srm_test([1000, 1100], [0.5, 0.5], p_threshold=0.05).flagged


def test_srm_respects_unequal_configured_weights_such_as_95_5() -> None:
    result = srm_test([9500, 500], [0.95, 0.05])
    assert result.chi2 == 0.0
    assert result.p_value == 1.0
    assert not result.flagged
    assert result.expected == pytest.approx((9500.0, 500.0))


def test_srm_effect_size_floor_silences_tiny_deviations_on_huge_samples() -> None:
    big = srm_test([5_010_000, 4_990_000], [0.5, 0.5])  # 0.2% deviation
    assert big.chi2 == pytest.approx(40.0, rel=1e-12)
    assert big.p_value == pytest.approx(2.5396e-10, rel=1e-4)
    assert big.flagged
    assert not srm_test([5_010_000, 4_990_000], [0.5, 0.5], min_deviation=0.05).flagged


def test_srm_rejects_mismatched_or_negative_configuration() -> None:
    with pytest.raises(ValueError):
        srm_test([1, 2], [1.0])
    with pytest.raises(ValueError):
        srm_test([1, 2], [-1.0, 2.0])
    with pytest.raises(ValueError):
        srm_test([1, 2], [0.0, 0.0])


# ---------------------------------------------------------------- issue 8, finding 3


def test_srm_flags_an_arm_that_receives_nothing() -> None:
    # Broken assignment: every unit in control. Before: p 0.0 but not flagged, because
    # the empty arm had fewer than 8 units.
    result = srm_test([100_000, 0], [0.5, 0.5])
    assert result.p_value == 0.0
    assert result.flagged


def test_srm_flags_a_stray_arm_with_a_single_unit() -> None:
    # A mistyped variant value in an imported CSV becomes a third arm with one unit
    # (equal intended split): p 0.0, and now flagged.
    result = srm_test([44_700, 45_489, 1], [1 / 3, 1 / 3, 1 / 3])
    assert result.p_value == 0.0
    assert result.flagged


@pytest.mark.parametrize(
    ("observed", "weights", "match"),
    [
        ([10, 12], [0.5, math.nan], "weight #2 is nan"),
        ([10, 12], [0.5, math.inf], "weight #2 is inf"),
        ([math.nan, 12], [0.5, 0.5], "count #1 is nan"),
        ([10, math.inf], [0.5, 0.5], "count #2 is inf"),
        ([10.5, 12], [0.5, 0.5], "whole numbers"),
    ],
)
def test_srm_rejects_nan_and_infinite_counts_and_weights(observed, weights, match) -> None:
    # Before: a NaN weight counted silently as 0, and infinite counts raised deep inside.
    with pytest.raises(ValueError, match=match):
        srm_test(observed, weights)
