"""What an experiment spec accepts: metric names are checked when the spec is made."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from abplatform.core.specs import ExperimentSpec, VariantSpec

VARIANTS = [
    VariantSpec(key="control", model_version="v1", backend_app_id="o/a", is_control=True),
    VariantSpec(key="treatment", model_version="v2", backend_app_id="o/b"),
]


def test_builtin_and_feedback_metrics_are_accepted() -> None:
    spec = ExperimentSpec(
        name="ok", variants=VARIANTS, primary_metric="thumbs_up", guardrails=["latency_p99"]
    )
    assert (spec.primary_metric, spec.guardrails) == ("thumbs_up", ["latency_p99"])


@pytest.mark.parametrize(
    ("field", "value"), [("primary_metric", "latency_p96"), ("guardrails", ["error-rate"])]
)
def test_a_mistyped_builtin_metric_is_refused_with_a_suggestion(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match="did you mean"):
        ExperimentSpec(name="typo", variants=VARIANTS, **{field: value})
