"""The stats report: what an analysis returns and every view (CLI, dashboard, demo) shows.

Built by :func:`abplatform.core.analysis.analyze` from a config and sufficient statistics;
plain frozen dataclasses, serialisable with :meth:`Report.to_json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Method = Literal["sequential", "fixed"]
Correction = Literal["holm", "bh", "none"]


@dataclass(frozen=True)
class VariantSummary:
    """Descriptive figures of one variant in the analysed phase.

    Latencies in ms over successful requests; rates are fractions; ``weight`` in percent.
    """

    key: str
    model_version: str
    is_control: bool
    weight: float
    units: int
    requests: int
    errors: int
    error_rate: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    feedback_count: int
    feedback_rate: float | None


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control on one metric.

    ``difference`` is in metric units (ms, fraction of requests, feedback value),
    ``lift`` is relative (a fraction of the control's value). ``ci``/``lift_ci`` are the
    confidence intervals (sequences, for the sequential method) of each. ``p_value`` is
    raw, ``adjusted_p_value`` after the family correction (guardrails are not corrected).
    ``chance_to_win`` is the Bayesian P(treatment better than control) under a flat prior,
    in the metric's good direction.
    """

    metric: str
    variant: str
    comparator: str
    control_value: float | None
    treatment_value: float | None
    difference: float | None
    ci: tuple[float, float] | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    p_value: float
    adjusted_p_value: float | None
    chance_to_win: float
    significant: bool
    better: bool | None
    error_message: str | None


@dataclass(frozen=True)
class MetricResult:
    """All comparisons for one metric; ``role`` is primary, guardrail or secondary."""

    metric: str
    role: Literal["primary", "guardrail", "secondary"]
    lower_is_better: bool
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class SrmCheck:
    """Sample-ratio-mismatch check of the phase's units against its weights (percent)."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    weights: tuple[float, ...]
    chi2: float
    p_value: float
    flagged: bool
    error_message: str | None


@dataclass(frozen=True)
class Decision:
    """ship / keep running / roll back, the variant concerned, and the rule applied."""

    action: Literal["ship", "keep running", "roll back"]
    variant: str | None
    rule: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """The full stats report of one phase of one experiment."""

    experiment: str
    status: str
    phase: int
    phase_started_at: datetime
    generated_at: datetime
    method: Method
    alpha: float
    correction: Correction
    primary_metric: str
    guardrails: tuple[str, ...]
    variants: tuple[VariantSummary, ...]
    metrics: tuple[MetricResult, ...]
    srm: SrmCheck
    multi_exposure_units: int
    multi_exposure_excluded: bool
    decision: Decision
    notes: tuple[str, ...] = field(default_factory=tuple)

    def metric(self, name: str) -> MetricResult:
        """The :class:`MetricResult` for ``name`` (KeyError if absent)."""
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(name)

    def to_json(self) -> str:
        """The report as JSON (timestamps ISO 8601 UTC, NaN as null)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            if isinstance(x, datetime):
                return x.isoformat()
            return x

        return json.dumps(clean(asdict(self)), indent=2)


__all__ = [
    "Comparison",
    "Correction",
    "Decision",
    "Method",
    "MetricResult",
    "Report",
    "SrmCheck",
    "VariantSummary",
]
