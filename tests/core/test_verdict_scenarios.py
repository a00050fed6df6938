"""Issue 8 scenarios without a database: traffic in memory → PhaseData → the report and
the verdict an operator reads. References are scipy and numpy, computed here.

* Finding 2: zero variance in one arm (a control with no errors, a conversion metric with
  0 conversions in control) made the comparison blind.
* Finding 4: a guardrail regression was ignored while the primary metric had no data.
* Finding 8: views mixed engines (P(better) next to a sequential p), showed p 1.0000 and
  chance 50% for empty phases, and internal codes.
* All phases: phases pooled as strata, not as a naive sum (Simpson's paradox).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abplatform.core import wording
from abplatform.core.analysis import AnalysisSettings, analyze
from abplatform.core.metrics import PhaseData
from abplatform.core.stats import messages
from tests.core.builders import Unit, experiment, phase_data

SEQUENTIAL = AnalysisSettings()
FIXED = AnalysisSettings(method="fixed", correction="none")


def _errors(variant: str, units: int, requests: int, failing_units: int) -> list[Unit]:
    """``units`` units of ``requests`` requests each; the first ``failing_units`` have one
    failed request."""
    return [
        Unit(variant, [(not (u < failing_units and r == 0), 40.0) for r in range(requests)])
        for u in range(units)
    ]


# ---------------------------------------------------------------- finding 2


def test_a_control_without_errors_does_not_blind_the_error_rate_guardrail() -> None:
    # Control: 0 errors in 10,000 requests; treatment: 100 (1,000 units × 10 requests).
    units = _errors("control", 1000, 10, 0) + _errors("treatment", 1000, 10, 100)
    config = experiment(primary="thumbs_up", guardrails=["error_rate"])
    report = analyze(config, phase_data(units), SEQUENTIAL)
    [err] = report.metric("error_rate").comparisons
    # Before: ZERO_NEGATIVE_VARIANCE, p 1.0, chance 0.5: the guardrail saw nothing.
    assert err.error_message is None and err.difference == pytest.approx(0.01)
    assert err.p_value < 1e-6 and err.better is False
    assert err.lift is None and err.lift_error_message == messages.BASELINE_VARIATION_ZERO
    assert err.note == messages.sentence(messages.BASELINE_VARIATION_ZERO)
    assert report.decision.action == "roll back"
    bayes = analyze(config, phase_data(units), AnalysisSettings(engine="bayesian"))
    [err] = bayes.metric("error_rate").comparisons
    assert err.chance_to_win < 1e-6 and err.better is False


def test_zero_conversions_in_control_match_welch_on_the_treatment_variance() -> None:
    # PostHog #35237: control 0/152 converted, treatment 35/148.
    units = [Unit("control", [(True, 40.0)], {"converted": [0.0]}) for _ in range(152)]
    units += [Unit("treatment", [(True, 40.0)], {"converted": [float(i < 35)]}) for i in range(148)]
    config = experiment(primary="converted", guardrails=[])
    report = analyze(config, phase_data(units), FIXED)
    [c] = report.metric("converted").comparisons
    p_b = 35 / 148
    se = math.sqrt(p_b * (1 - p_b) / 148)  # the control arm adds no variance
    assert c.difference == pytest.approx(p_b, abs=1e-12)
    assert c.p_value == pytest.approx(2 * stats.t.sf(p_b / se, 147), rel=1e-9)
    q = stats.t.ppf(0.975, 147)
    assert c.ci == pytest.approx((p_b - q * se, p_b + q * se), abs=1e-12)
    assert c.lift is None and "relative lift is undefined" in c.note
    assert c.better is True and report.decision.action == "ship"


# ---------------------------------------------------------------- finding 4


def test_a_guardrail_regression_rolls_back_while_the_primary_metric_has_no_data() -> None:
    rng = np.random.default_rng(8)
    base = rng.lognormal(4.0, 0.4, size=(600, 4))
    units = [Unit("control", [(True, float(x)) for x in row]) for row in base]
    units += [Unit("treatment", [(True, float(x) * 2.34) for x in row]) for row in base]
    config = experiment(primary="thumbs_up", guardrails=["latency_p95"])
    report = analyze(config, phase_data(units), SEQUENTIAL)
    [p95] = report.metric("latency_p95").comparisons
    assert p95.lift == pytest.approx(1.34, abs=0.05)  # the issue's +134%
    assert p95.p_value < 1e-4 and wording.verdict_text(p95) == "worse"
    assert "thumbs_up" not in [m.metric for m in report.metrics]
    # Before: "keep running: no data for primary metric".
    assert report.decision.action == "roll back" and report.decision.variant == "control"
    assert report.decision.reasons == ("treatment: guardrail regressed (latency_p95)",)


def test_without_any_data_the_decision_keeps_running_and_says_why() -> None:
    report = analyze(experiment(primary="thumbs_up"), phase_data([]), SEQUENTIAL)
    assert report.decision.action == "keep running"
    assert report.decision.reasons == ("treatment: no data for primary metric 'thumbs_up' yet",)


# ---------------------------------------------------------------- finding 8


def _borderline() -> list[Unit]:
    """A clear effect for a fixed-horizon test that the always-valid test does not see
    yet at this sample size (about z = 3 at 400 units)."""
    rng = np.random.default_rng(11)
    units = []
    for i in range(400):
        arm = ("control", "treatment")[i % 2]
        p = 0.40 if arm == "control" else 0.55
        units.append(Unit(arm, [(True, 40.0)], {"liked": [float(rng.random() < p)]}))
    return units


def test_each_view_shows_one_engines_figures() -> None:
    config = experiment(primary="liked", guardrails=[])
    data = phase_data(_borderline())
    frequentist = analyze(config, data, SEQUENTIAL)
    [f] = frequentist.metric("liked").comparisons
    bayes = analyze(config, data, AnalysisSettings(engine="bayesian"))
    [b] = bayes.metric("liked").comparisons
    # Before, one table held P(better) 99.9% beside an always-valid p of 0.49, n.s.
    assert f.p_value > 0.05 and f.chance_to_win is None and f.risk is None
    assert b.chance_to_win > 0.99 and b.p_value is None and b.risk is not None
    assert frequentist.method_label.startswith("sequential test (always valid")
    assert bayes.method_label.startswith("Bayesian (flat prior)") and bayes.prior == "flat prior"
    assert "P(better than control)" in wording.headline(bayes)
    assert "P(better" not in wording.headline(frequentist)


def test_an_empty_phase_shows_dashes_and_a_sentence_not_p_one_and_fifty_percent() -> None:
    report = analyze(experiment(primary="thumbs_up"), phase_data([]), SEQUENTIAL)
    for m in report.metrics:
        for c in m.comparisons:
            assert (c.p_value, c.chance_to_win, c.difference) == (None, None, None)
            assert c.note == "no units in one of the variants yet"
            assert wording.p_value(c.p_value) == "–"
    codes = messages.ALL_MESSAGES
    texts = [wording.headline(report), wording.srm_text(report), *wording.missing_figures(report)]
    assert not any(code in text for code in codes for text in texts)
    assert wording.srm_text(report) == "no units in this phase yet"


def test_p_values_read_as_evidence_not_as_four_decimals_of_one() -> None:
    assert [wording.p_value(p) for p in (1.0, 0.9999, 0.4895, 0.0123, 0.004, 3e-7)] == [
        "1", "1", "0.49", "0.01", "0.0040", "<0.0001",
    ]  # fmt: skip


# ---------------------------------------------------------------- all phases


def _phase(number: int, arms: dict[str, tuple[int, int]]) -> PhaseData:
    """One request per unit; ``arms`` maps a variant to (units, failed units)."""
    units = [
        Unit(key, [(i >= failed, 40.0)]) for key, (n, failed) in arms.items() for i in range(n)
    ]
    return phase_data(units, phase=number)


def test_phases_are_pooled_as_strata_not_summed() -> None:
    # No treatment effect; errors fall from 10% to 1% between phases, and the split moves
    # from 80/20 to 20/80. Summing units across phases makes the treatment look better.
    config = experiment(primary="error_rate", guardrails=[], phases=[(80, 20), (20, 80)])
    p1 = _phase(1, {"control": (800, 80), "treatment": (200, 20)})
    p2 = _phase(2, {"control": (200, 2), "treatment": (800, 8)})
    naive = PhaseData(2, {k: p1.variant(k) + p2.variant(k) for k in ("control", "treatment")})
    [summed] = analyze(config, naive, FIXED).metric("error_rate").comparisons
    assert summed.difference == pytest.approx(28 / 1000 - 82 / 1000) and summed.better is True
    report = analyze(config, [p1, p2], FIXED)
    [c] = report.metric("error_rate").comparisons
    assert report.phases == (1, 2) and report.all_phases
    assert c.difference == pytest.approx(0.0, abs=1e-12) and c.better is None

    # Independent check: stratum weights 1000/2000 each, se² = Σ w² (v_A/n_A + v_B/n_B)
    # with the delta-method ratio variance of each arm (here p(1-p)·n/(n-1) per unit).
    def v(p: float, n: int) -> float:
        return p * (1 - p) * n / (n - 1) / n

    se = math.sqrt(0.25 * (v(0.1, 800) + v(0.1, 200)) + 0.25 * (v(0.01, 200) + v(0.01, 800)))
    q = stats.t.ppf(0.975, 1998)  # Welch dof of the pooled arms (large-sample)
    assert c.ci[1] == pytest.approx(q * se, rel=2e-3)
    assert [s.phase for s in report.phase_srm] == [1, 2]
    assert report.srm.observed == (1000, 1000) and not report.srm.flagged
    assert "pooled as strata" in report.scope_label
