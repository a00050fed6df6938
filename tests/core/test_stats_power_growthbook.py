"""Power and MDE against GrowthBook's own published figures (issue 8, finding 9).

The expected values are copied from GrowthBook's tests of ``power.ts``
(``packages/shared/test/power.test.ts``, growthbook/growthbook at commit 0f9802e5, MIT
licence, see ``tests/data/growthbook_cases.LICENSE``), which round to 5 decimals; we
match them to 1e-4 (in fact to the rounding, 5e-6). GrowthBook's ``n`` is the total over
``nVariations`` arms; ours is per arm. Its level is not split across treatments, which
is our default too.
"""

from __future__ import annotations

import math

import pytest

from abplatform.core.stats import (
    Baseline,
    achieved_power,
    minimum_detectable_effect,
    sample_size_per_variant,
)

TOL = 1e-4

# "calculates power correctly" & co.: mean 10, sd sqrt(3909.9997749994377), effect 5%,
# 400,000 users over 3 variations, alpha 0.05, two-tailed.
BIG = Baseline.for_mean(10.0, math.sqrt(3909.9997749994377))
BIG_N = 400_000 / 3


@pytest.mark.parametrize(
    ("method", "power", "mde"),
    [("fixed", 0.52144, 0.07027), ("sequential", 0.20596, 0.12821)],
)
def test_single_metric_power_and_mde_match_growthbook(method, power, mde) -> None:
    ours = achieved_power(BIG, 0.05, BIG_N, n_variants=3, method=method)
    assert ours == pytest.approx(power, abs=TOL)
    assert minimum_detectable_effect(BIG, BIG_N, n_variants=3, method=method) == pytest.approx(
        mde, abs=TOL
    )


# "checks power" / "checks sequential power": 4,500 users a week over 3 variations, weeks
# 1..9, a click-through rate of 10% (effect +5%) and revenue with mean 0.1 and sd
# sqrt(0.5) (effect +30%). Values per week, click-through rate then revenue.
CTR = (Baseline.for_proportion(0.1), 0.05)
REVENUE = (Baseline.for_mean(0.1, math.sqrt(0.5)), 0.3)
WEEKLY = {
    "fixed": {
        "power": [
            0.073, 0.17053, 0.0965, 0.29389, 0.1204, 0.41122, 0.14458, 0.51749, 0.16895,
            0.61037, 0.19342, 0.68938, 0.21791, 0.75513, 0.24235, 0.80886, 0.26666, 0.85213,
        ],
        "mde": [
            0.36767, 1.26769, 0.24505, 0.71941, 0.19525, 0.54299, 0.16673, 0.4506, 0.14774,
            0.39208, 0.13394, 0.35099, 0.12336, 0.32018, 0.11491, 0.29603, 0.10796, 0.27647,
        ],
    },
    "sequential": {
        "power": [
            0.05936, 0.09832, 0.06912, 0.14992, 0.07849, 0.19972, 0.08761, 0.24784, 0.09657,
            0.29426, 0.10541, 0.33888, 0.11415, 0.38165, 0.12282, 0.42249, 0.13142, 0.46136,
        ],
        "mde": [
            0.65545, 4.33868, 0.4112, 1.51846, 0.32394, 1.04943, 0.27607, 0.84084, 0.24484,
            0.71862, 0.22241, 0.63663, 0.20532, 0.577, 0.19172, 0.53123, 0.18058, 0.49473,
        ],
    },
}  # fmt: skip


@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_weekly_power_and_mde_of_two_metrics_match_growthbook(method) -> None:
    powers, mdes = [], []
    for week in range(1, 10):
        n = 4500 * week / 3
        for baseline, effect in (CTR, REVENUE):
            powers.append(achieved_power(baseline, effect, n, n_variants=3, method=method))
            mdes.append(minimum_detectable_effect(baseline, n, n_variants=3, method=method))
    assert powers == pytest.approx(WEEKLY[method]["power"], abs=TOL)
    assert mdes == pytest.approx(WEEKLY[method]["mde"], abs=TOL)


def test_growthbooks_weeks_to_80_percent_power_follow_from_the_sample_size() -> None:
    # GrowthBook: revenue reaches 80% power in week 8 (fixed); never within 9 weeks
    # sequentially; the click-through rate never within 9 weeks.
    baseline, effect = REVENUE
    n = sample_size_per_variant(baseline, effect, n_variants=3)
    assert math.ceil(n / 1500) == 8
    sequential = sample_size_per_variant(baseline, effect, n_variants=3, method="sequential")
    assert sequential > 9 * 1500 and sequential / n > 1.8  # the sequential test needs more
    assert achieved_power(baseline, effect, sequential, n_variants=3, method="sequential") >= 0.8
    assert achieved_power(baseline, effect, sequential - 1, n_variants=3, method="sequential") < 0.8


def test_the_power_the_fixed_plan_promises_is_not_what_the_sequential_test_delivers() -> None:
    # Sized for the fixed-horizon test, the default (sequential) analysis has far less
    # power: here about 0.46 instead of 0.80 at GrowthBook's own example.
    baseline, effect = REVENUE
    n = sample_size_per_variant(baseline, effect, n_variants=3)
    fixed = achieved_power(baseline, effect, n, n_variants=3)
    sequential = achieved_power(baseline, effect, n, n_variants=3, method="sequential")
    assert fixed >= 0.8 and sequential < 0.5


def test_alpha_is_not_split_by_default_and_split_on_request() -> None:
    baseline = Baseline.for_mean(100.0, 20.0)
    default = sample_size_per_variant(baseline, 2.0, difference="absolute", n_variants=3)
    two_arms = sample_size_per_variant(baseline, 2.0, difference="absolute")
    split = sample_size_per_variant(
        baseline, 2.0, difference="absolute", n_variants=3, split_alpha=True
    )
    halved = sample_size_per_variant(baseline, 2.0, difference="absolute", alpha=0.025)
    assert default == two_arms == 1570 and split == halved == 1902
