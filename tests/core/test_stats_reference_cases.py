"""Conformance with GrowthBook's gbstats reference cases.

Every number below is copied from ``/work/shared/reference/stats_cases.md`` (which lifts
them from gbstats 0.8.0's own unit tests; the source test is named per case). gbstats
rounds to 5 decimals, so the tolerance is 1e-5 absolute unless the table says otherwise
(C10 gives 9 decimals, C12 is checked to 1e-8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from abplatform.core.stats import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    Statistic,
    bayesian_test,
    benjamini_hochberg,
    holm_bonferroni,
    sequential_test,
    srm_test,
    welch_ttest,
)

TOL = 1e-5

C1_A = SampleMeanStatistic(n=3407, sum=1396.87, sum_squares=52377.9767)
C1_B = SampleMeanStatistic(n=3461, sum=2422.7, sum_squares=134698.29)
C4_A = SampleMeanStatistic(n=3000, sum=1396.87, sum_squares=52377.9767)
C10_A = SampleMeanStatistic(n=100, sum=270, sum_squares=848.79)
C10_B = SampleMeanStatistic(n=120, sum=300, sum_squares=869)
C16_A = RegressionAdjustedStatistic(
    n=2000,
    post=SampleMeanStatistic(2000, 203404.8035, 26753125.8297),
    pre=SampleMeanStatistic(2000, 203771.1102, 31386601.5389),
    post_pre_sum_of_products=28189643.1884,
)
C16_B = RegressionAdjustedStatistic(
    n=2100,
    post=SampleMeanStatistic(2100, 205575.9536, 26462154.5139),
    pre=SampleMeanStatistic(2100, 213334.0108, 32666403.0546),
    post_pre_sum_of_products=28650502.0285,
)


@dataclass(frozen=True)
class Case:
    """One row of stats_cases.md: which engine, the inputs and the expected fields."""

    case_id: str
    source: str
    engine: str  # "welch", "sequential" or "bayes"
    control: Statistic
    treatment: Statistic
    settings: dict[str, Any]
    expected: dict[str, Any]
    tol: float = TOL
    notes: str = field(default="")


CASES = [
    Case(
        "C1",
        "frequentist/test_tests.py::TestTwoSidedTTest.test_two_sided_ttest",
        "welch",
        C1_A,
        C1_B,
        {"difference": "relative"},
        {"estimate": 0.70732, "ci": (-0.03526, 1.44989), "se": 0.37879, "p_value": 0.06191},
    ),
    Case(
        "C2",
        "frequentist/test_tests.py::TestTwoSidedTTest.test_two_sided_ttest_absolute",
        "welch",
        C1_A,
        C1_B,
        {"difference": "absolute"},
        {"estimate": 0.29, "ci": (0.04538, 0.53462), "se": 0.12478, "p_value": 0.02016},
    ),
    Case(
        "C3",
        "frequentist/test_tests.py::TestTwoSidedTTest.test_two_sided_ttest_binom",
        "welch",
        ProportionStatistic(n=28, sum=14),
        ProportionStatistic(n=30, sum=16),
        {"difference": "relative"},
        {"estimate": 0.06667, "ci": (-0.47767, 0.61101), "se": 0.2717, "p_value": 0.80707},
    ),
    Case(
        "C4-greater-relative",
        "frequentist/test_tests.py::TestOneSidedGreaterTTest",
        "welch",
        C4_A,
        C1_B,
        {"difference": "relative", "alternative": "greater"},
        {
            "estimate": 0.5033611,
            "se": 0.3334122,
            "ci": (-0.0451367, math.inf),
            "p_value": 0.0655826,
        },
    ),
    Case(
        "C4-greater-absolute",
        "frequentist/test_tests.py::TestOneSidedGreaterTTest (absolute)",
        "welch",
        C4_A,
        C1_B,
        {"difference": "absolute", "alternative": "greater"},
        {"ci": (0.0207915, math.inf), "p_value": 0.0355427},
    ),
    Case(
        "C4-lesser-relative",
        "frequentist/test_tests.py::TestOneSidedLesserTTest",
        "welch",
        C4_A,
        C1_B,
        {"difference": "relative", "alternative": "less"},
        {"ci": (-math.inf, 1.0518588), "p_value": 0.9344174},
    ),
    Case(
        "C6",
        "frequentist/test_tests.py::TestSequentialTTest.test_sequential_test_runs_prop",
        "sequential",
        ProportionStatistic(n=3000, sum=1396),
        ProportionStatistic(n=3461, sum=2422),
        {"difference": "relative", "tuning": 5000},
        {"estimate": 0.50386, "ci": (0.40098, 0.60675), "se": 0.03386, "p_value": 0.0},
    ),
    Case(
        "C7",
        "bayesian/test_tests.py::TestBinom",
        "bayes",
        ProportionStatistic(n=100, sum=49),
        ProportionStatistic(n=100, sum=51),
        {"difference": "relative"},
        {
            "estimate": 0.04082,
            "ci": (-0.24779, 0.32943),
            "sd": 0.14725,
            "chance_to_win": 0.60918,
            "risk": (0.0814, 0.04058),
        },
    ),
    Case(
        "C8",
        "bayesian/test_tests.py::TestNorm.test_bayesian_gaussian_ab_test",
        "bayes",
        SampleMeanStatistic(n=10, sum=100, sum_squares=1002.25),
        SampleMeanStatistic(n=10, sum=105, sum_squares=1111.5),
        {"difference": "relative"},
        {
            "estimate": 0.05,
            "ci": (-0.02, 0.12),
            "sd": 0.03572,
            "chance_to_win": 0.91923,
            "risk": (0.05131, 0.00131),
        },
    ),
    Case(
        "C10-frequentist",
        "test_gbstats.py::test_get_metric_dfs_frequentist (dimension 'one')",
        "welch",
        C10_A,
        C10_B,
        {"difference": "relative"},
        {"estimate": -0.074074074, "p_value": 0.145219005},
        tol=1e-9,
    ),
    Case(
        "C10-bayesian",
        "test_gbstats.py::test_get_metric_dfs_new (dimension 'one')",
        "bayes",
        C10_A,
        C10_B,
        {"difference": "relative"},
        {"estimate": -0.074074074, "chance_to_win": 0.071834168, "risk[1]": 0.075691131},
        tol=1e-9,
    ),
    # C16 is "computed" with gbstats 0.8.0 TwoSidedTTest + RegressionAdjustedStatistic.
    Case(
        "C16-cuped-relative",
        "computed: TwoSidedTTest + RegressionAdjustedStatistic(theta=None)",
        "welch",
        C16_A,
        C16_B,
        {"difference": "relative"},
        {
            "estimate": -0.0353892,
            "ci": (-0.0473577, -0.0234207),
            "se": 0.0061047,
            "p_value": 7.26e-9,
        },
    ),
    Case(
        "C16-cuped-absolute",
        "computed: TwoSidedTTest + RegressionAdjustedStatistic(theta=None), absolute",
        "welch",
        C16_A,
        C16_B,
        {"difference": "absolute"},
        {"estimate": -3.599167, "ci": (-4.836706, -2.361628), "p_value": 1.27e-8},
    ),
    Case(
        "C16-without-cuped",
        "computed: TwoSidedTTest on the post-period statistics only",
        "welch",
        C16_A.post,
        C16_B.post,
        {"difference": "relative"},
        {
            "estimate": -0.0374533,
            "ci": (-0.0699606, -0.0049460),
            "se": 0.0165807,
            "p_value": 0.02395,
        },
    ),
]

ENGINES = {"welch": welch_ttest, "sequential": sequential_test, "bayes": bayesian_test}


def _approx_pair(actual: tuple[float, float], expected: tuple[float, float], tol: float) -> bool:
    return all(
        (math.isinf(e) and a == e) or abs(a - e) <= tol
        for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize("case", CASES, ids=[c.case_id for c in CASES])
def test_reproduces_gbstats_reference_case(case: Case) -> None:
    result = ENGINES[case.engine](case.control, case.treatment, **case.settings)
    assert result.error_message is None
    for name, expected in case.expected.items():
        if name == "risk[1]":
            assert result.risk is not None
            assert result.risk[1] == pytest.approx(expected, abs=case.tol)
        elif isinstance(expected, tuple):
            actual = getattr(result, name)
            assert actual is not None
            assert _approx_pair(actual, expected, case.tol), f"{name}: {actual} vs {expected}"
        else:
            assert getattr(result, name) == pytest.approx(expected, abs=case.tol), name


def test_c16_pooled_theta_matches_gbstats_compute_theta() -> None:
    from abplatform.core.stats.cuped import pooled_theta

    assert pooled_theta(C16_A, C16_B) == pytest.approx(0.7046049, abs=1e-7)


def test_c12_srm_matches_gbstats_check_srm_to_1e8() -> None:
    # stats_cases.md C12: old test_gbstats.py::TestHelpers.test_srm, check_srm([1000,1200],[.5,.5])
    result = srm_test([1000, 1200], [0.5, 0.5])
    assert result.p_value == pytest.approx(0.000020079, abs=1e-8)
    assert result.chi2 == pytest.approx(18.1818181818, abs=1e-8)
    assert result.dof == 1
    assert result.flagged


def test_c13_holm_matches_growthbook_hb_procedure() -> None:
    # stats_cases.md C13: packages/shared/test/experiments.test.ts "does HB procedure correctly"
    adjusted = holm_bonferroni([0.01, 0.04, 0.03, 0.005, 0.55, 0.6])
    assert adjusted == pytest.approx([0.05, 0.12, 0.12, 0.03, 1.0, 1.0], abs=TOL)


def test_c14_benjamini_hochberg_matches_growthbook_bh_procedure() -> None:
    # stats_cases.md C14: packages/shared/test/experiments.test.ts "does BH procedure correctly"
    adjusted = benjamini_hochberg([0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138])
    expected = [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415]
    assert adjusted == pytest.approx(expected, abs=TOL)


def test_gotcha_relative_lift_is_not_a_rescaled_absolute_interval() -> None:
    # stats_cases.md gotcha 2: dividing the absolute CI by the control mean gives
    # (0.1108, 1.3038) and p 0.0201; the delta method gives (-0.035, 1.450) and p 0.062.
    relative = welch_ttest(C1_A, C1_B, difference="relative")
    assert relative.ci is not None
    assert relative.ci[0] < 0 < relative.ci[1]
    assert relative.p_value == pytest.approx(0.06191, abs=TOL)


def test_gotcha_frequentist_uses_welch_t_while_bayesian_uses_normal() -> None:
    # stats_cases.md gotcha 3: C8 data, t-test CI (-0.0270, 0.1270) p 0.1845 with dof 13.2.
    a = SampleMeanStatistic(n=10, sum=100, sum_squares=1002.25)
    b = SampleMeanStatistic(n=10, sum=105, sum_squares=1111.5)
    freq = welch_ttest(a, b)
    assert freq.ci is not None
    assert freq.ci == pytest.approx((-0.0270, 0.1270), abs=1e-4)
    assert freq.p_value == pytest.approx(0.1845, abs=1e-4)
    assert freq.dof == pytest.approx(13.2, abs=0.05)
