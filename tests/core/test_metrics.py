"""The metric catalogue: each metric's statistic is built from named aggregates."""

from __future__ import annotations

import pytest

from abplatform.core import metrics
from abplatform.core.metrics import FeedbackData, Moments, PhaseData, VariantData
from abplatform.core.stats import ProportionStatistic, RatioStatistic


def test_every_builtin_is_lower_is_better_with_a_unit_and_the_defaults_are_guardrails() -> None:
    assert metrics.DEFAULT_GUARDRAILS == ("error_rate", "latency_p95")
    assert metrics.default_guardrails(True) == ("error_rate", "latency_p95", "fallback_rate")
    assert all(m.lower_is_better for m in metrics.BUILTIN_METRICS.values())
    assert {m.unit for m in metrics.BUILTIN_METRICS.values()} == {"fraction", "ms", "USD"}
    assert metrics.metric("thumbs_up").source == "feedback"
    assert not metrics.metric("thumbs_up").lower_is_better


def test_a_ratio_metric_takes_its_numerator_and_denominator_moments() -> None:
    m = Moments(
        3,
        {"errors": 2.0, "valid_requests": 9.0},
        {"errors": 2.0, "valid_requests": 35.0},
        {("errors", "valid_requests"): 7.0},
    )
    data = PhaseData(1, {"a": VariantData(requests=m)})
    [stat] = metrics.metric("error_rate").statistics(data, ["a"]).values()
    assert stat == RatioStatistic(3, 2.0, 2.0, 9.0, 35.0, 7.0)


def test_moments_of_disjoint_units_add() -> None:
    a = Moments(1, {"x": 1.0}, {"x": 1.0}, {("x", "y"): 2.0})
    b = Moments(2, {"x": 3.0, "y": 1.0}, {"x": 5.0}, {("x", "y"): 1.0})
    assert a + b == Moments(3, {"x": 4.0, "y": 1.0}, {"x": 6.0}, {("x", "y"): 3.0})


def test_a_feedback_metric_is_a_proportion_only_when_every_unit_has_one_binary_value() -> None:
    single = FeedbackData(
        Moments(4, {"value": 3.0, "count": 4.0}, {"value": 3.0, "count": 4.0},
                {("value", "count"): 3.0}),
        binary_single=True,
    )  # fmt: skip
    many = FeedbackData(
        Moments(2, {"value": 5.0, "count": 3.0}, {"value": 13.0, "count": 5.0},
                {("value", "count"): 8.0}),
        binary_single=False,
    )  # fmt: skip
    data = PhaseData(1, {"a": VariantData(feedback={"m": single})})
    assert metrics.metric("m").statistics(data, ["a"])["a"] == ProportionStatistic(4, 3.0)
    mixed = PhaseData(1, {"a": VariantData(feedback={"m": single}),
                          "b": VariantData(feedback={"m": many})})  # fmt: skip
    stats = metrics.metric("m").statistics(mixed, ["a", "b"])
    assert isinstance(stats["a"], RatioStatistic) and stats["b"].mean == pytest.approx(5 / 3)


@pytest.mark.parametrize("name", ["error_rate", "latency_p95", "thumbs_up", "signup_rate"])
def test_builtins_and_feedback_names_are_accepted(name: str) -> None:
    assert metrics.check_metric_name(name) == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("latency_p96", "did you mean 'latency_p9"),
        ("error-rate", "did you mean 'error_rate'"),
        ("latency_p90", "built-in metrics are error_rate"),
        ("cost_per_image", "may not look like a built-in one"),
    ],
)
def test_a_name_like_a_builtin_is_refused_naming_the_builtins(name: str, says: str) -> None:
    # A typo of a built-in would become a feedback metric that never gets data, and a
    # guardrail without data never blocks a decision (found trying the README as a user).
    with pytest.raises(ValueError, match=says):
        metrics.check_metric_name(name)
