"""The analysis as a pure function: traffic in memory → PhaseData → the report and the
verdict an operator reads. No database.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abplatform.core.analysis import AnalysisSettings, analyze, metric_names, pick_phase
from abplatform.core.errors import InvalidInputError
from abplatform.core.stats import RatioStatistic, welch_ttest
from tests.core.builders import Unit, experiment, phase_data, simulate

SEQUENTIAL = AnalysisSettings()
FIXED = AnalysisSettings(method="fixed", correction="none")


def test_error_rate_is_the_unit_level_delta_method_ratio() -> None:
    units = simulate(np.random.default_rng(1))
    report = analyze(experiment(primary="thumbs_up"), phase_data(units), FIXED)

    def ratio(key: str) -> RatioStatistic:
        m = np.array([sum(not ok for ok, _ in u.requests) for u in units if u.variant == key])
        d = np.array([len(u.requests) for u in units if u.variant == key], dtype=float)
        return RatioStatistic(len(m), m.sum(), (m**2).sum(), d.sum(), (d**2).sum(), (m * d).sum())

    expected = welch_ttest(ratio("control"), ratio("treatment"), difference="absolute")
    [comp] = report.metric("error_rate").comparisons
    assert comp.difference == pytest.approx(expected.estimate, abs=1e-12)
    assert comp.ci == pytest.approx(expected.ci, abs=1e-12)
    assert comp.p_value == pytest.approx(expected.p_value, abs=1e-12)


def test_srm_against_the_configured_weights_blocks_the_decision() -> None:
    units = [Unit("control", [(True, 50.0)]) for _ in range(300)]
    units += [Unit("treatment", [(True, 50.0)]) for _ in range(200)]
    report = analyze(experiment(primary="error_rate"), phase_data(units), SEQUENTIAL)
    ref = stats.chisquare([300, 200], [250, 250])
    assert report.srm.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert report.srm.flagged
    assert report.decision.action == "keep running"
    assert "sample ratio mismatch" in report.decision.reasons[0]


def test_a_significantly_better_treatment_without_guardrail_regression_ships() -> None:
    units = simulate(np.random.default_rng(3), units=1000, thumbs=(0.3, 0.7))
    config = experiment(primary="thumbs_up", guardrails=["error_rate"])
    report = analyze(config, phase_data(units), SEQUENTIAL)
    [comp] = report.metric("thumbs_up").comparisons
    assert comp.better is True and comp.p_value < 0.05 and comp.chance_to_win is None
    assert report.decision.action == "ship" and report.decision.variant == "treatment"
    assert "sequential" in report.decision.rule
    bayes = analyze(config, phase_data(units), AnalysisSettings(engine="bayesian"))
    [comp] = bayes.metric("thumbs_up").comparisons
    assert comp.better is True and comp.chance_to_win > 0.99 and comp.p_value is None
    assert bayes.decision.action == "ship" and "Bayesian, flat prior" in bayes.decision.rule


def test_a_guardrail_regression_rolls_back() -> None:
    units = simulate(np.random.default_rng(4), units=1000, lat=(3.0, 4.0), thumbs=(0.5, 0.5))
    config = experiment(primary="thumbs_up", guardrails=["latency_p95"])
    report = analyze(config, phase_data(units), SEQUENTIAL)
    [p95] = report.metric("latency_p95").comparisons
    assert p95.better is False and p95.adjusted_p_value is None  # guardrails: uncorrected
    assert report.decision.action == "roll back" and report.decision.variant == "control"


def test_without_traffic_nothing_is_informative_and_the_report_says_why() -> None:
    report = analyze(experiment(primary="thumbs_up"), phase_data([]), SEQUENTIAL)
    assert all(v.units == 0 for v in report.variants)
    [err] = report.metric("error_rate").comparisons
    assert err.error_message == "NO_UNITS_IN_VARIATION" and err.p_value is None
    assert err.chance_to_win is None and err.note == "no units in one of the variants yet"
    assert report.decision.action == "keep running"
    assert "primary metric 'thumbs_up' has no data" in report.notes[0]
    assert report.to_json()  # NaN-free JSON


def test_the_family_correction_leaves_guardrails_alone() -> None:
    units = simulate(np.random.default_rng(5), units=600)
    config = experiment(primary="thumbs_up", guardrails=["error_rate"])
    report = analyze(config, phase_data(units), AnalysisSettings(correction="holm"))
    [guard] = report.metric("error_rate").comparisons
    [primary] = report.metric("thumbs_up").comparisons
    assert guard.adjusted_p_value is None
    assert primary.adjusted_p_value is not None
    assert primary.adjusted_p_value >= primary.p_value


def test_metrics_are_listed_primary_then_guardrails_then_the_rest() -> None:
    units = simulate(np.random.default_rng(6), units=50)
    config = experiment(primary="thumbs_up", guardrails=["latency_p95", "error_rate"])
    names = metric_names(config, phase_data(units))
    assert names[:3] == ["thumbs_up", "latency_p95", "error_rate"]
    assert set(names) == {"thumbs_up", "error_rate", "latency_mean", "latency_p50",
                          "latency_p95", "latency_p99"}  # fmt: skip
    imported = experiment(primary="thumbs_up", source="import", guardrails=[])
    assert metric_names(imported, phase_data(units)) == ["thumbs_up"]


def test_a_concluded_experiment_is_analysed_on_the_phase_before_its_promotion() -> None:
    config = experiment(status="concluded", phases=[(50, 50), (0, 100)])
    assert pick_phase(config, None).number == 1
    assert pick_phase(config, 2).number == 2
    with pytest.raises(InvalidInputError, match=r"has phases 1\.\.2; got phase 3"):
        pick_phase(config, 3)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (AnalysisSettings(method="bayes"), "allowed: sequential, fixed"),  # type: ignore[arg-type]
        (AnalysisSettings(correction="x"), "allowed: holm, bh, none"),  # type: ignore[arg-type]
        (AnalysisSettings(alpha=1.5), "fraction in"),
    ],
)
def test_bad_settings_say_what_is_allowed(settings: AnalysisSettings, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        analyze(experiment(), phase_data([]), settings)
